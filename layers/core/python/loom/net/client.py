"""The one way Loom calls outside HTTP servers.

Per hop (the first request and every redirect): parse and normalise the URL, resolve the
name once with our own resolver, refuse if ANY answer is internal (workspace allowlist
aside), then connect only to the addresses just checked.

Pinning: requests go through ``PinnedTransport``, an httpx transport that keeps one
httpcore connection pool per ``Pin`` (scheme, host, port, checked addresses). Each pool's
network backend is a ``PinnedBackend`` that, asked by httpcore to connect to ``host:port``,
connects to the pinned addresses instead and refuses any other host. httpcore still sees
the original hostname as the origin, so the Host header, TLS SNI and certificate checks all
use the hostname, while the HTTP library never resolves a name itself. A request without a
pin, or whose URL does not match its pin, is refused. Because the pin is part of the pool
key, a kept-alive connection is only reused for requests whose own check came to the same
addresses.

Clients share one transport per event loop, so node executions (of any workspace) reuse
kept-alive connections. That is safe because every request is checked, with its own
workspace's allowlist, before a pool is chosen, and a pool only ever reaches its pin.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import typing
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from ipaddress import ip_address

import httpcore
import httpx

from loom import __version__
from loom.net.errors import (
    InvalidOutboundRequest,
    InvalidOutboundResponse,
    OutboundBlocked,
    OutboundCertificateInvalid,
    OutboundConnectionFailed,
    OutboundTimeout,
    OutboundTooLarge,
    TooManyRedirects,
)
from loom.net.policy import (
    Allowlist,
    IPAddress,
    Target,
    canonical_address,
    check_address,
    check_headers,
    check_method,
    parse_url,
)

log = logging.getLogger(__name__)
# httpcore traces response headers at DEBUG, and a server may echo a credential back in
# them; whatever the process's log level, the libraries under the choke point stay quiet.
for _library in ("httpcore", "httpx"):
    logging.getLogger(_library).setLevel(logging.WARNING)

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> addresses``: every address the name currently has, as text."""

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Dropped whenever a redirect leaves the origin (scheme, host, port) it was sent to.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
PIN = "loom.pin"
MAX_POOLS = 64
DEFAULT_HEADERS = {
    "user-agent": f"loom/{__version__}",
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",  # what _Decoder reads, with bounded output
}


async def system_resolver(host: str, port: int) -> Sequence[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OutboundConnectionFailed(
            f"Could not resolve host {host}: {exc.strerror or exc}.",
            solution="Check the host name in the URL.",
        ) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Pin:
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    reason: str
    headers: httpx.Headers
    content: bytes
    url: httpx.URL  # the final one, after redirects


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects ``pin.host:pin.port`` to the pinned addresses, in order; nothing else."""

    def __init__(self, pin: Pin, inner: httpcore.AsyncNetworkBackend) -> None:
        self._pin = pin
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (host, port) != (self._pin.host, self._pin.port):
            raise OutboundBlocked(
                f"Refused to connect to {host}:{port}: it is not the checked target "
                f"{self._pin.host}:{self._pin.port}.",
                solution="Report this as a bug.",
            )
        failure: Exception | None = None
        for address in self._pin.addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # a pin always holds at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundBlocked("Unix sockets are never reachable.", solution="Use an http(s) URL.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncBaseTransport):
    """Sends each request over a pool for the ``Pin`` in its ``loom.pin`` extension."""

    def __init__(
        self,
        *,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._backend = network_backend or httpcore.AnyIOBackend()
        self._ssl_context = ssl_context or default_ssl_context()
        self._pools: dict[Pin, httpcore.AsyncConnectionPool] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pin = request.extensions.get(PIN)
        url = request.url
        if (
            not isinstance(pin, Pin)
            or (url.scheme, url.raw_host.decode("ascii")) != (pin.scheme, pin.host)
            or (url.port or (443 if url.scheme == "https" else 80)) != pin.port
        ):
            raise OutboundBlocked(
                f"Refused to send a request to {url.host} without a checked address.",
                solution="Report this as a bug: requests must go through OutboundClient.",
            )
        pool = self._pools.pop(pin, None) or httpcore.AsyncConnectionPool(
            ssl_context=self._ssl_context,
            network_backend=PinnedBackend(pin, self._backend),
            max_connections=10,
            keepalive_expiry=30,
        )
        self._pools[pin] = pool  # most recently used last
        if len(self._pools) > MAX_POOLS:
            await self._evict_idle()
        assert isinstance(request.stream, httpx.AsyncByteStream)
        response = await pool.handle_async_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=request.stream,
            )
        )
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def _evict_idle(self) -> None:
        """Close the least recently used idle pools, down to ``MAX_POOLS``. A pool that is
        sending has a connection that is not idle, so it is never closed under a request."""
        for pin, pool in list(self._pools.items())[:-1]:  # never the one about to be used
            if len(self._pools) <= MAX_POOLS:
                return
            if all(connection.is_idle() for connection in pool.connections):
                del self._pools[pin]
                await pool.aclose()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


_SHARED: dict[asyncio.AbstractEventLoop, tuple[PinnedTransport, AsyncGenerator[None, None]]] = {}


async def shared_transport() -> PinnedTransport:
    """The running event loop's transport (connection pools belong to one loop).

    It is closed when the loop shuts down: its keeper is an async generator, and
    ``asyncio.run`` finalises a loop's async generators (``loop.shutdown_asyncgens``) before
    closing it, so neither sockets nor the loop outlive it."""
    loop = asyncio.get_running_loop()
    entry = _SHARED.get(loop)
    if entry is None:
        transport = PinnedTransport()
        keeper = _keep_until_shutdown(loop, transport)
        entry = _SHARED[loop] = (transport, keeper)
        await keeper.asend(None)
    return entry[0]


async def _keep_until_shutdown(
    loop: asyncio.AbstractEventLoop, transport: PinnedTransport
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        _SHARED.pop(loop, None)
        await transport.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class OutboundClient:
    """Outbound HTTP for one workspace: its allowlist, a resolver, pinned connections.

    Use as ``async with OutboundClient(allowlist=...) as client``; ``request`` returns the
    whole (capped) body. Errors are ``loom.net.errors`` classes naming the refused rule.
    Without a ``network_backend`` or ``ssl_context`` of its own, the client uses the event
    loop's shared transport; with one (tests), it owns a transport and closes it."""

    def __init__(
        self,
        *,
        allowlist: Iterable[str] = (),
        resolver: Resolver = system_resolver,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_redirects: int = MAX_REDIRECTS,
    ) -> None:
        self.allowlist = Allowlist(allowlist)
        self._resolver = resolver
        self._own_transport = (
            PinnedTransport(network_backend=network_backend, ssl_context=ssl_context)
            if network_backend is not None or ssl_context is not None
            else None
        )
        self._max_redirects = max_redirects

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_transport is not None:
            await self._own_transport.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, typing.Any] | None = None,
        content: bytes | None = None,
        timeout: float = 30,
        max_bytes: int = 10 * 1024 * 1024,
        sensitive_headers: Iterable[str] = (),
    ) -> OutboundResponse:
        """Send, follow up to ``max_redirects`` checked redirects, and read the body.

        ``timeout`` is one deadline for everything: resolving, connecting, redirects and the
        body. ``max_bytes`` bounds the decoded body, read as it streams.
        ``sensitive_headers`` (e.g. an API-key header) are dropped, with Authorization and
        Cookie, when a redirect leaves the origin."""
        check_method(method)
        sent = dict(headers or {})
        check_headers(sent)
        target = parse_url(url)
        if params:
            target = parse_url(target.url.copy_merge_params(params))
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(
                    method.upper(),
                    target,
                    sent,
                    content,
                    max_bytes,
                    CREDENTIAL_HEADERS | {name.lower() for name in sensitive_headers},
                )
        except TimeoutError:
            raise OutboundTimeout(
                f"{method.upper()} {target.redacted} did not complete within {timeout:g} s.",
                solution="Raise the timeout, or check that the server answers.",
            ) from None

    async def _follow(
        self,
        method: str,
        target: Target,
        headers: dict[str, str],
        content: bytes | None,
        max_bytes: int,
        sensitive: frozenset[str],
    ) -> OutboundResponse:
        via = ""
        for hop in range(self._max_redirects + 1):
            response = await self._send(method, target, headers, content, via)
            location = response.headers.get("location")
            if response.status_code not in REDIRECTS or location is None:
                body = await _read_capped(response, target, max_bytes)
                return OutboundResponse(
                    status=response.status_code,
                    reason=response.reason_phrase,
                    headers=response.headers,
                    content=body,
                    url=target.url,
                )
            await response.aclose()
            if hop == self._max_redirects:
                break
            following = _redirect_target(target, location)
            if following.origin != target.origin:
                headers = {k: v for k, v in headers.items() if k.lower() not in sensitive}
            if _becomes_get(response.status_code, method):
                method, content = "GET", None
                headers = {k: v for k, v in headers.items() if not k.lower().startswith("content-")}
            via, target = target.redacted, following
        raise TooManyRedirects(
            f"{target.redacted} redirected more than {self._max_redirects} times.",
            solution="Call the final URL directly, or check the server for a redirect loop.",
        )

    async def _send(
        self,
        method: str,
        target: Target,
        headers: Mapping[str, str],
        content: bytes | None,
        via: str,
    ) -> httpx.Response:
        pin = await self.pin(target, via)
        merged = httpx.Headers(DEFAULT_HEADERS)
        merged.update(headers)
        request = httpx.Request(
            method,
            target.url,
            headers=merged,
            content=content,
            extensions={PIN: pin},
        )
        log.debug("outbound %s %s:%s via %s", method, target.host, target.port, pin.addresses)
        transport = self._own_transport or await shared_transport()
        with _transport_errors(target):
            return await transport.handle_async_request(request)

    async def pin(self, target: Target, via: str = "") -> Pin:
        """Resolve once, refuse if any answer is internal, and pin what was checked."""
        addresses = await resolve_checked(target, self.allowlist, self._resolver, via=via)
        return Pin(target.scheme, target.host, target.port, tuple(map(str, addresses)))


async def resolve_checked(
    target: Target, allowlist: Allowlist, resolver: Resolver, *, via: str = ""
) -> list[IPAddress]:
    """Every address ``target`` resolves to, each checked by the outbound policy: one that
    is not allowed refuses them all. Connect only to these (that is the pinning)."""
    if target.address is not None:
        addresses: list[IPAddress] = [target.address]
    else:
        answers = await resolver(target.host, target.port)
        addresses = [_parse_answer(target, answer) for answer in answers]
        if not addresses:
            raise OutboundConnectionFailed(
                f"Host {target.host} has no address.", solution="Check the host name."
            )
    for address in addresses:
        check_address(target, address, allowlist, via=via)
    return addresses


def _parse_answer(target: Target, answer: str) -> IPAddress:
    try:
        return canonical_address(ip_address(answer))
    except ValueError:
        raise OutboundConnectionFailed(
            f"Resolving {target.host} gave {answer!r}, which is not an IP address.",
            solution="Check the resolver.",
        ) from None


def _redirect_target(source: Target, location: str) -> Target:
    try:
        joined = source.url.join(location)
    except httpx.InvalidURL:
        raise InvalidOutboundRequest(
            f"{source.redacted} redirected to an invalid URL.", solution="Fix the server."
        ) from None
    return parse_url(joined, what=f"redirect target of {source.redacted}")


def _becomes_get(status: int, method: str) -> bool:
    """What browsers (and httpx) do: 302 and 303 become GET, and 301 after a POST."""
    return method != "HEAD" and (status in (302, 303) or (status == 301 and method == "POST"))


@contextmanager
def _transport_errors(target: Target) -> Iterator[None]:
    """httpcore failures as Loom errors naming the target, never the request."""
    try:
        yield
    except httpcore.ConnectError as exc:
        invalid = certificate_error(exc)
        if invalid is not None:
            raise OutboundCertificateInvalid(
                f"The TLS certificate of {target.where} is not valid for {target.host}: "
                f"{invalid.verify_message}.",
                solution="Use the host name the certificate was issued for, or ask the "
                "server's owner to fix its certificate.",
            ) from None
        raise _connection_failed(target, exc) from None
    except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
        raise _connection_failed(target, exc) from None


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate failure behind a connect error (httpcore and anyio wrap it)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    return cause


def _connection_failed(target: Target, exc: Exception) -> OutboundConnectionFailed:
    return OutboundConnectionFailed(
        f"The connection to {target.where} failed: {str(exc)[:200] or type(exc).__name__}.",
        solution="Check that the server is up and speaks HTTP (or HTTPS on an HTTPS port).",
    )


async def _read_capped(response: httpx.Response, target: Target, max_bytes: int) -> bytes:
    """Read and decode the body as it streams, and stop as soon as it passes ``max_bytes``,
    so neither a huge body nor a compression bomb is ever held in memory."""
    try:
        encoding = response.headers.get("content-encoding", "").strip().lower()
        declared = response.headers.get("content-length", "")
        if encoding in ("", "identity") and declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(target, max_bytes, f"declares {int(declared)} bytes")
        decoder = _Decoder(encoding, target)
        body = bytearray()
        with _transport_errors(target):
            async for chunk in response.aiter_raw():
                body += decoder.feed(chunk, max_bytes + 1 - len(body))
                if len(body) > max_bytes:
                    raise _too_large(target, max_bytes, "sent more")
        body += decoder.flush(max_bytes + 1 - len(body))
        if len(body) > max_bytes:
            raise _too_large(target, max_bytes, "sent more")
        return bytes(body)
    finally:
        await response.aclose()


class _Decoder:
    """Identity, gzip or deflate, decompressed at most ``room`` bytes at a time."""

    def __init__(self, encoding: str, target: Target) -> None:
        self._target = target
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header
        else:
            raise InvalidOutboundResponse(
                f"{target.where} answered with content encoding {encoding!r}, which Loom "
                "does not decode.",
                solution="Do not ask for it in Accept-Encoding; Loom reads gzip and deflate.",
            )

    def feed(self, chunk: bytes, room: int) -> bytes:
        if self._zlib is None:
            return chunk
        try:
            return self._zlib.decompress(chunk, room)
        except zlib.error:
            raise self._corrupt() from None

    def flush(self, room: int) -> bytes:
        if self._zlib is None:
            return b""
        try:
            return self._zlib.flush(room)
        except zlib.error:
            raise self._corrupt() from None

    def _corrupt(self) -> InvalidOutboundResponse:
        return InvalidOutboundResponse(
            f"{self._target.where} sent a compressed body that cannot be decompressed.",
            solution="Check the server's Content-Encoding.",
        )


def _too_large(target: Target, max_bytes: int, detail: str) -> OutboundTooLarge:
    return OutboundTooLarge(
        f"The response from {target.where} {detail}: more than the {max_bytes} byte limit.",
        solution="Raise max_response_bytes, or ask the server for less (paging, filters).",
    )


@cache
def default_ssl_context() -> ssl.SSLContext:
    """One verifying context per process (loading CA certificates takes milliseconds),
    ignoring SSL_* environment variables."""
    return httpx.create_ssl_context(trust_env=False)
