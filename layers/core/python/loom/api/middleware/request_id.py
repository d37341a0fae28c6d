"""Every request gets an id, echoed in ``X-Request-ID`` and carried by every log line."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom.observability import request_id_var

# Only ids that are safe to log and echo verbatim are taken from the caller.
_ACCEPTED = re.compile(r"[A-Za-z0-9._-]{1,128}")


def incoming_or_new(scope: Scope) -> str:
    given = Headers(scope=scope).get("x-request-id")
    if given is not None and _ACCEPTED.fullmatch(given):
        return given
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
