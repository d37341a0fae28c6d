"""Security headers on every response.

The API serves JSON and event streams, never pages, so its Content-Security-Policy allows
nothing. The two documentation pages are the exception: they load Swagger UI or ReDoc from
jsDelivr, and Swagger UI starts from one inline script, which is allowed by its hash
(computed from the page as served, so it stays exact when FastAPI changes the page).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Collection

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom.api.middleware._asgi import route_path

API_CSP = "default-src 'none'; frame-ancestors 'none'"

_COMMON_DOCS = (
    "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SWAGGER_CSP = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net {inline_scripts}; "
    "style-src https://cdn.jsdelivr.net 'unsafe-inline'; " + _COMMON_DOCS
)
# ReDoc builds its search index in a Web Worker made from a blob: URL.
REDOC_CSP = (
    "default-src 'none'; script-src https://cdn.jsdelivr.net; worker-src blob:; "
    "style-src https://fonts.googleapis.com 'unsafe-inline'; font-src https://fonts.gstatic.com; "
    + _COMMON_DOCS
)

_FIXED = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes(html: bytes) -> str:
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )


class SecurityHeadersMiddleware:
    """Headers a response already carries are kept: a route may choose its own."""

    def __init__(self, app: ASGIApp, *, swagger_path: str | None, redoc_path: str | None) -> None:
        self.app = app
        self.swagger_path = swagger_path
        self.redoc_path = redoc_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path == self.swagger_path:
            await self.app(scope, receive, _HashingSender(send, SWAGGER_CSP))
            return
        csp = REDOC_CSP if path == self.redoc_path else API_CSP
        no_store = path == "/v1" or path.startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _apply(MutableHeaders(scope=message), csp, no_store=no_store)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _HashingSender:
    """Holds the (small) Swagger UI page back until its inline scripts can be hashed."""

    def __init__(self, send: Send, policy: str) -> None:
        self.send = send
        self.policy = policy
        self.start: Message | None = None
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.body.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = bytes(self.body)
        csp = self.policy.format(inline_scripts=inline_script_hashes(body))
        _apply(MutableHeaders(scope=self.start), csp, no_store=False)
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": body})


def _apply(headers: MutableHeaders, csp: str, *, no_store: bool) -> None:
    present: Collection[str] = {name.lower() for name in headers}
    for name, value in _FIXED:
        if name.lower() not in present:
            headers[name] = value
    if "content-security-policy" not in present:
        headers["Content-Security-Policy"] = csp
    if no_store and "cache-control" not in present:
        headers["Cache-Control"] = "no-store"
