"""The one error shape of the API: ``{"error": {code, message, solution, request_id}}``.

This is the only place that maps domain errors to HTTP statuses.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loom.errors import LoomError
from loom.observability import request_id_var

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: ("bad_request", "Check the request syntax."),
    401: ("unauthorized", "Send a valid bearer token or API key."),
    403: ("forbidden", "Ask a workspace admin for the needed role or scope."),
    404: ("not_found", "Check the URL and the id."),
    405: ("method_not_allowed", "See /docs for the methods this route accepts."),
    413: ("payload_too_large", "Send a smaller body."),
    415: ("unsupported_media_type", "Send JSON, optionally gzip- or deflate-encoded."),
    429: ("rate_limited", "Wait for Retry-After seconds, then try again."),
}


def error_body(code: str, message: str, solution: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "solution": solution,
        "request_id": request_id_var.get(),
    }
    if details is not None:
        error["details"] = details
    return {"error": error}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoomError)
    async def _loom_error(_: Request, exc: LoomError) -> JSONResponse:
        body = error_body(exc.code, exc.message, exc.solution, exc.details)
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"path": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        body = error_body(
            "invalid_request",
            f"The request has {len(fields)} invalid field(s).",
            "Fix every field listed in details and send it again.",
            fields,
        )
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, solution = _HTTP_CODES.get(exc.status_code, ("http_error", ""))
        body = error_body(code, str(exc.detail), solution)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(psycopg.DataError)
    async def _unstorable_value(_: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value Postgres cannot hold (e.g. a NUL character); the unit of work rolled back,
        # so nothing changed. Postgres's first line names the problem, never the data.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid value"
        body = error_body(
            "invalid_value",
            f"A value in the request cannot be stored: {reason}.",
            "Remove NUL (\\u0000) characters and out-of-range values, then send it again.",
        )
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        body = error_body(
            "internal",
            "Something went wrong on our side.",
            "Retry; if it persists, report the request_id.",
        )
        return JSONResponse(body, status_code=500)
