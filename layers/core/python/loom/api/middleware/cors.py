"""CORS for the configured browser origins only.

Loom authenticates with headers (bearer tokens, API keys), never cookies, so credentials
mode stays off. A preflight that fails is answered in the API's error shape.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from loom.api.middleware._asgi import error_response

ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID", "X-API-Key")
ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
EXPOSED_HEADERS = ("X-Request-ID", "Retry-After")


class LoomCORSMiddleware(CORSMiddleware):
    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        # Starlette explains a refusal in plain text; nothing else about the policy leaks.
        return error_response(
            400,
            "cors_refused",
            "Cross-origin request refused; not allowed: "
            + bytes(response.body).decode().removeprefix("Disallowed CORS ")
            + ".",
            "Call the API from an origin listed in LOOM_CORS_ORIGINS, with the methods and "
            "headers it allows.",
            headers={"Vary": "Origin"},
        )
