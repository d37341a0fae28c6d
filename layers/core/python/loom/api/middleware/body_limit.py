"""Request body limits, applied to the decompressed size.

A declared Content-Length over the limit is refused before the app runs. Otherwise the body
is counted as the app reads it, and gzip or deflate bodies are inflated incrementally, never
producing more than the remaining allowance, so a compression bomb costs at most the limit
in memory. The app sees the inflated body and no Content-Encoding header. Crossing the limit
while the app reads raises an HTTPException, which the app's own handler renders (FastAPI
re-raises HTTPExceptions met while reading a body).
"""

from __future__ import annotations

import zlib

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom.api.middleware._asgi import error_response

# Content-Encoding -> zlib window bits (31: gzip wrapper; 15: zlib wrapper, which is what
# HTTP calls "deflate").
_ENCODINGS = {"gzip": 31, "x-gzip": 31, "deflate": 15}
_STRIPPED = (b"content-encoding", b"content-length")


class _Inflater:
    def __init__(self, encoding: str) -> None:
        self.wbits = _ENCODINGS[encoding]
        self.multi_member = self.wbits == 31
        self.stream = zlib.decompressobj(wbits=self.wbits)

    def feed(self, data: bytes, max_length: int) -> bytes:
        """Inflate ``data`` into at most ``max_length`` (>= 1) bytes; reaching it means
        the body is over the limit, and what was not inflated is dropped."""
        out = self.stream.decompress(data, max_length)
        # A gzip body may hold several members back to back.
        while self.stream.eof and self.stream.unused_data and len(out) < max_length:
            if not self.multi_member:
                raise zlib.error("data after the end of the deflate stream")
            rest = self.stream.unused_data
            self.stream = zlib.decompressobj(wbits=self.wbits)
            out += self.stream.decompress(rest, max_length - len(out))
        return out

    def finish(self) -> None:
        if not self.stream.eof:
            raise zlib.error("the compressed body ends early")


class _LimitedReceive:
    def __init__(self, receive: Receive, limit: int, encoding: str | None) -> None:
        self.receive = receive
        self.limit = limit
        self.encoding = encoding
        self.inflater = _Inflater(encoding) if encoding else None
        self.received = 0
        self.delivered = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] != "http.request":
            return message
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        self.received += len(body)
        if self.received > self.limit:
            raise _too_large(self.limit)
        if self.inflater is not None:
            try:
                body = self.inflater.feed(body, self.limit - self.delivered + 1)
                if not more and len(body) + self.delivered <= self.limit:
                    self.inflater.finish()
            except zlib.error:
                raise HTTPException(
                    400, f"The request body is not valid {self.encoding} data."
                ) from None
        self.delivered += len(body)
        if self.delivered > self.limit:
            raise _too_large(self.limit)
        return {"type": "http.request", "body": body, "more_body": more}


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"The request body is larger than {limit} bytes.")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            encoding = ""
        elif encoding not in _ENCODINGS:
            response = error_response(
                415,
                "unsupported_content_encoding",
                "The request body's Content-Encoding is not supported.",
                "Send the body uncompressed, or compressed with gzip or deflate.",
            )
            await response(scope, receive, send)
            return
        declared = headers.get("content-length", "")
        # The server has already refused a Content-Length that is not a number.
        if declared.isdigit() and int(declared) > self.limit:
            response = error_response(
                413,
                "payload_too_large",
                f"The request body is larger than {self.limit} bytes.",
                "Send a smaller body.",
            )
            await response(scope, receive, send)
            return
        if encoding:
            # The app sees the inflated body: the encoding and the old length no longer apply.
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in _STRIPPED]
        await self.app(scope, _LimitedReceive(receive, self.limit, encoding or None), send)
