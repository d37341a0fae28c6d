"""Every request gets an id, echoed in ``X-Request-ID`` and carried by every log line."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom.observability import request_id_var

# Only ids that are safe to log and echo verbatim are taken from the caller.
_ACCEPTED = re.compile(r"[A-Za-z0-9._-]{1,128}")


def incoming_or_new(scope: Scope) -> str:
    # ASGI servers lower-case header names; a scan beats building a Headers per request.
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given: str = value.decode("latin-1")
            if _ACCEPTED.fullmatch(given):
                return given
            break
    return str(uuid.uuid4())


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_or_new(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        token = request_id_var.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
