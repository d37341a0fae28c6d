"""The outbound client against real HTTP servers on 127.0.0.1, reached only through the
workspace allowlist (loopback is refused like any internal address otherwise)."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from loom.net import (
    OutboundBlocked,
    OutboundCertificateInvalid,
    OutboundClient,
    OutboundResponse,
    OutboundTimeout,
    OutboundTooLarge,
)
from loom.net import client as client_module
from tests.utils.loopback_http import LoopbackServer, Reply, Seen, serve

MB = 1024 * 1024


def fetch(url: str, allowlist: Sequence[str], **options: Any) -> OutboundResponse:
    async def go() -> OutboundResponse:
        async with OutboundClient(allowlist=allowlist) as client:
            return await client.request(options.pop("method", "GET"), url, **options)

    return asyncio.run(go())


def echo(seen: Seen) -> Reply:
    return Reply(200, f"{seen.method} {seen.path}".encode(), {"Content-Type": "text/plain"})


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with serve(echo) as running:
        yield running


def test_loopback_is_refused_unless_allowlisted(server: LoopbackServer) -> None:
    with pytest.raises(OutboundBlocked) as refused:
        fetch(server.url("/x"), allowlist=[])
    assert "loopback" in refused.value.message
    assert f"'{server.where}'" in refused.value.solution
    with pytest.raises(OutboundBlocked):
        fetch(server.url("/x"), allowlist=["127.0.0.1:1"])  # another port
    assert server.seen == []


def test_allowlisted_loopback_server_answers(server: LoopbackServer) -> None:
    response = fetch(server.url("/hello"), allowlist=[server.where], params={"q": "1"})
    assert (response.status, response.content) == (200, b"GET /hello")
    assert response.headers["content-type"] == "text/plain"
    assert str(response.url) == server.url("/hello?q=1")
    assert server.seen[0].query == {"q": ["1"]}


def test_connections_are_reused_across_clients_but_each_request_is_checked(
    server: LoopbackServer,
) -> None:
    """Clients on one event loop share kept-alive connections, yet a client whose
    workspace does not allowlist the server is refused even with a connection open."""

    async def go() -> None:
        for _ in range(3):
            async with OutboundClient(allowlist=[server.where]) as client:
                await client.request("GET", server.url("/"))
        async with OutboundClient(allowlist=[]) as stranger:
            with pytest.raises(OutboundBlocked):
                await stranger.request("GET", server.url("/"))

    asyncio.run(go())
    assert len(server.seen) == 3
    assert len({seen.client_port for seen in server.seen}) == 1


def test_shared_connections_close_with_their_event_loop(server: LoopbackServer) -> None:
    others = dict(client_module._SHARED)  # loops still running in this process (the engine's)
    for _ in range(3):
        fetch(server.url("/"), allowlist=[server.where])
    assert others == client_module._SHARED, "each closed loop took its pool with it"
    assert len({seen.client_port for seen in server.seen}) == 3


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server context for a self-signed certificate naming api.test, and its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return server, cert.public_bytes(serialization.Encoding.PEM).decode()


def test_tls_verifies_the_host_name_while_connecting_to_the_pinned_address(
    certificate: tuple[ssl.SSLContext, str],
) -> None:
    """api.test and wrong.test both resolve (fake DNS) to the loopback server; its
    certificate names api.test only. The pinned connection must still do SNI and hostname
    verification on the name in the URL."""
    server_context, pem = certificate

    async def loopback(host: str, port: int) -> Sequence[str]:
        return ["127.0.0.1"]

    async def get(host: str, port: int) -> OutboundResponse:
        async with OutboundClient(
            allowlist=[host],
            resolver=loopback,
            ssl_context=ssl.create_default_context(cadata=pem),
        ) as client:
            return await client.request("GET", f"https://{host}:{port}/secure")

    with serve(echo, tls=server_context) as server:
        response = asyncio.run(get("api.test", server.port))
        assert response.content == b"GET /secure"
        assert server.seen[0].headers["host"] == f"api.test:{server.port}"
        with pytest.raises(OutboundCertificateInvalid, match=r"not valid for wrong\.test"):
            asyncio.run(get("wrong.test", server.port))
        assert len(server.seen) == 1


def test_redirect_to_a_loopback_port_that_is_not_allowlisted_is_refused() -> None:
    with serve(echo) as target:

        def redirect(seen: Seen) -> Reply:
            return Reply(302, headers={"Location": target.url("/stolen")})

        with serve(redirect) as first:
            with pytest.raises(OutboundBlocked) as refused:
                fetch(first.url("/"), allowlist=[first.where])
            assert f"redirected from {first.url('/')}" in refused.value.message
            assert target.seen == []
            # Allowlisting the target as well lets the same redirect through.
            response = fetch(first.url("/"), allowlist=[first.where, target.where])
            assert response.content == b"GET /stolen"
            assert str(response.url) == target.url("/stolen")


def test_streamed_gigabyte_is_cut_at_the_cap_quickly_in_bounded_memory() -> None:
    chunk = bytes(64 * 1024)

    def gigabyte(seen: Seen) -> Reply:
        return Reply(200, (chunk for _ in range(16 * 1024)))  # chunked, no length

    with serve(gigabyte) as server:
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(OutboundTooLarge) as refused:
                fetch(server.url("/zeros"), allowlist=[server.where], max_bytes=2 * MB)
            took = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert "2097152 byte limit" in refused.value.message
    assert took < 5
    assert peak < 16 * MB


def test_declared_length_over_the_cap_is_refused_before_reading() -> None:
    def huge(seen: Seen) -> Reply:
        return Reply(
            200, (bytes(64 * 1024) for _ in range(16 * 1024)), {"Content-Length": "1073741824"}
        )

    with serve(huge) as server, pytest.raises(OutboundTooLarge, match="declares 1073741824"):
        fetch(server.url("/"), allowlist=[server.where], max_bytes=MB)


def test_compression_bomb_is_cut_at_the_decoded_cap() -> None:
    bomb = gzip.compress(bytes(32 * MB), compresslevel=9)  # 32 KB on the wire

    def compressed(seen: Seen) -> Reply:
        return Reply(200, bomb, {"Content-Encoding": "gzip"})

    with serve(compressed) as server:
        tracemalloc.start()
        try:
            with pytest.raises(OutboundTooLarge):
                fetch(server.url("/"), allowlist=[server.where], max_bytes=MB)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert len(bomb) < MB
    assert peak < 8 * MB


def test_gzip_bodies_are_decoded() -> None:
    def compressed(seen: Seen) -> Reply:
        return Reply(200, gzip.compress(b"hello " * 1000), {"Content-Encoding": "gzip"})

    with serve(compressed) as server:
        response = fetch(server.url("/"), allowlist=[server.where])
    assert response.content == b"hello " * 1000


def test_slow_server_times_out_within_the_total_limit() -> None:
    def slow(seen: Seen) -> Reply:
        return Reply(200, b"late", delay=10)

    with serve(slow) as server:
        started = time.perf_counter()
        with pytest.raises(OutboundTimeout) as refused:
            fetch(server.url("/slow"), allowlist=[server.where], timeout=0.5)
        took = time.perf_counter() - started
    assert took < 2
    assert refused.value.message == f"GET {server.url('/slow')} did not complete within 0.5 s."


def test_trickling_body_hits_the_total_limit() -> None:
    """Each chunk comes well within a per-read timeout; the total limit still applies."""

    def trickle(seen: Seen) -> Reply:
        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                time.sleep(0.05)
                yield b"x"

        return Reply(200, chunks())

    with serve(trickle) as server:
        started = time.perf_counter()
        with pytest.raises(OutboundTimeout):
            fetch(server.url("/"), allowlist=[server.where], timeout=0.6)
        assert time.perf_counter() - started < 2
