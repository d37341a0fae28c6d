"""A handler's unexpected exception becomes the app's 500 reply inside this stack.

Starlette renders uncaught exceptions in its outermost layer, outside every user
middleware, so that reply would miss the request id, the security headers and the metrics.
This layer, innermost, calls the same handler (``loom.api.errors``) while they still apply.
"""

from __future__ import annotations

import inspect

from starlette.requests import Request
from starlette.types import ASGIApp, HTTPExceptionHandler, Message, Receive, Scope, Send


class UnhandledErrorMiddleware:
    def __init__(self, app: ASGIApp, *, handler: HTTPExceptionHandler) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise  # a broken stream: nothing can be said to the client any more
            response = self.handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
