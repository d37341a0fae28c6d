"""The outbound choke point for httpx2, the HTTP stack of the official ``mcp`` SDK.

The SDK takes an ``httpx2.AsyncClient``; this transport makes every request it sends go
through the same rules as ``OutboundClient``: the host is resolved once, every address is
checked (workspace allowlist aside, metadata never), and the connection goes only to the
checked addresses, while TLS still verifies the host name. Each request is checked again,
so a redirect the SDK follows is too. Responses stream (MCP's server-sent events); the SDK
bounds each event's size.
"""

from __future__ import annotations

import ssl
import typing
from collections.abc import AsyncIterator, Iterable, Sequence

import httpcore2
import httpx2

from loom.net.client import Pin, Resolver, default_ssl_context, resolve_checked, system_resolver
from loom.net.errors import OutboundBlocked, OutboundConnectionFailed
from loom.net.policy import Allowlist, parse_url


class _PinnedBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self, pin: Pin) -> None:
        self._pin = pin
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        if (host, port) != (self._pin.host, self._pin.port):
            raise OutboundBlocked(
                f"Refused to connect to {host}:{port}: it is not the checked target.",
                solution="Report this as a bug.",
            )
        failure: Exception | None = None
        for address in self._pin.addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore2.ConnectError as exc:
                failure = exc
        raise OutboundConnectionFailed(
            f"Could not connect to {host}:{port}: {failure}.",
            solution="Check that the server is up and the URL is right.",
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise OutboundBlocked("Unix sockets are never reachable.", solution="Use an http(s) URL.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpx2.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class CheckedTransport(httpx2.AsyncBaseTransport):
    def __init__(
        self,
        allowlist: Sequence[str] = (),
        *,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        via: str = "",
    ) -> None:
        self._allowlist = Allowlist(allowlist)
        self._resolver = resolver
        self._ssl_context = ssl_context or default_ssl_context()
        self._via = via
        self._pools: dict[Pin, httpcore2.AsyncConnectionPool] = {}

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        target = parse_url(str(request.url))
        addresses = await resolve_checked(target, self._allowlist, self._resolver, via=self._via)
        pin = Pin(target.scheme, target.host, target.port, tuple(map(str, addresses)))
        pool = self._pools.get(pin)
        if pool is None:
            pool = httpcore2.AsyncConnectionPool(
                ssl_context=self._ssl_context, network_backend=_PinnedBackend(pin)
            )
            self._pools[pin] = pool
        url = request.url
        assert isinstance(request.stream, httpx2.AsyncByteStream)
        response = await pool.handle_async_request(
            httpcore2.Request(
                method=request.method,
                url=httpcore2.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Stream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
