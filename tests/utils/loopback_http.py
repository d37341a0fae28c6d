"""Real HTTP/1.1 servers on 127.0.0.1 for outbound tests: every request goes to a function.

The function gets the request as the server saw it and returns a ``Reply``; a reply body
given as an iterable of chunks is streamed (chunked unless a Content-Length header is set),
so a test can serve a gigabyte without holding it.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; the last value of a repeated header
    body: bytes
    client_port: int  # tells connections apart


@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering


Handler = Callable[[Seen], Reply]


@dataclass
class LoopbackServer:
    port: int
    seen: list[Seen]
    stopping: threading.Event

    @property
    def where(self) -> str:
        """The allowlist entry that admits this server."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handle: Handler) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.handle = handle
        self.seen: list[Seen] = []
        self.stopping = threading.Event()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body meet delayed ACKs: 40 ms a reply
    server: _Server

    def answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        parts = urlsplit(self.path)
        request = Seen(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
            client_port=self.client_address[1],
        )
        self.server.seen.append(request)
        reply = self.server.handle(request)
        if reply.delay and self.server.stopping.wait(reply.delay):
            return
        try:
            self._write(reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _write(self, reply: Reply) -> None:
        self.send_response(reply.status)
        names = {name.lower() for name in reply.headers}
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if isinstance(reply.body, bytes):
            if "content-length" not in names:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
            return
        chunked = "content-length" not in names
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in reply.body:
            if self.server.stopping.is_set():
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


for _method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
    setattr(_RequestHandler, f"do_{_method}", _RequestHandler.answer)


@contextmanager
def serve(handle: Handler, *, tls: ssl.SSLContext | None = None) -> Iterator[LoopbackServer]:
    """Serve ``handle`` on a free port of 127.0.0.1; HTTPS with ``tls`` (a server context)."""
    server = _Server(handle)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield LoopbackServer(
            port=server.server_address[1], seen=server.seen, stopping=server.stopping
        )
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
