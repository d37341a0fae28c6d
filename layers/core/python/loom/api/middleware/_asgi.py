"""Small helpers shared by the middleware."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse
from starlette.types import Scope

from loom.api.errors import error_body


def route_path(scope: Scope) -> str:
    """The path the app routes on: without the root path a proxy or stage mounts it under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def error_response(
    status: int,
    code: str,
    message: str,
    solution: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An answer in the API's one error shape, for requests the app never sees."""
    return JSONResponse(error_body(code, message, solution), status_code=status, headers=headers)
