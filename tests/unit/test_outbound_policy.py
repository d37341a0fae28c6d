"""The outbound choke point refuses internal targets before any connection (no I/O here).

DNS is a fake resolver and the network is a fake httpcore backend that records every
connection and TLS handshake and answers canned HTTP; nothing here opens a socket.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine, Iterable, Sequence
from ipaddress import ip_address
from typing import Any, TypeVar

import httpcore
import pytest

from loom.errors import LoomError
from loom.net import (
    Allowlist,
    InvalidOutboundRequest,
    OutboundBlocked,
    OutboundClient,
    OutboundResponse,
    parse_url,
)
from loom.net.policy import refusal

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def http(status: int = 200, *, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} X", *(f"{k}: {v}" for k, v in headers)]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + body


class FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, network: FakeNetwork, reply: bytes) -> None:
        self._network = network
        self._reply = [reply]

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._reply.pop(0) if self._reply else b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._network.written.append(buffer)

    async def aclose(self) -> None:
        pass

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._network.tls_names.append(server_hostname)
        return self


class FakeNetwork(httpcore.AsyncNetworkBackend):
    """Records where the client connects; each connection answers the next reply."""

    def __init__(self, *replies: bytes) -> None:
        self.replies = list(replies)
        self.connects: list[tuple[str, int]] = []
        self.tls_names: list[str | None] = []
        self.written: list[bytes] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return FakeStream(self, self.replies.pop(0))

    async def sleep(self, seconds: float) -> None:
        pass


class FakeDns:
    """Answers each name from a script, one answer per lookup (the last one repeats)."""

    def __init__(self, **script: Sequence[Sequence[str]]) -> None:
        self.script = {name.replace("_", "."): list(answers) for name, answers in script.items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append(host)
        answers = self.script[host]
        return answers.pop(0) if len(answers) > 1 else answers[0]


async def no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} must not be resolved")


def fetch(
    url: str,
    *,
    network: FakeNetwork | None = None,
    resolver: Any = no_dns,
    allowlist: Sequence[str] = (),
    **options: Any,
) -> OutboundResponse:
    async def go() -> OutboundResponse:
        async with OutboundClient(
            allowlist=allowlist, resolver=resolver, network_backend=network or FakeNetwork()
        ) as client:
            return await client.request(options.pop("method", "GET"), url, **options)

    return run(go())


# (URL, refusing error, words the message must hold): every one is refused before connecting.
LITERAL_TARGETS = [
    ("http://127.0.0.1/", OutboundBlocked, "loopback"),
    ("http://127.255.255.254:8080/admin", OutboundBlocked, "loopback"),
    ("http://10.0.0.1/", OutboundBlocked, "private"),
    ("http://172.16.5.4/", OutboundBlocked, "private"),
    ("http://192.168.1.1/", OutboundBlocked, "private"),
    ("http://100.64.0.1/", OutboundBlocked, "carrier-grade NAT"),
    ("http://169.254.169.254/latest/meta-data/", OutboundBlocked, "metadata"),
    ("http://169.254.170.2/v2/credentials", OutboundBlocked, "metadata"),
    ("http://169.254.1.1/", OutboundBlocked, "link-local"),
    ("http://0.0.0.0:8080/", OutboundBlocked, "this network"),
    ("http://0/", OutboundBlocked, "0 means 0.0.0.0"),
    ("http://192.0.0.1/", OutboundBlocked, "IETF protocol assignment"),
    ("http://198.18.0.1/", OutboundBlocked, "benchmarking"),
    ("http://255.255.255.255/", OutboundBlocked, "broadcast"),
    ("http://224.0.0.251/", OutboundBlocked, "multicast"),
    ("http://240.0.0.1/", OutboundBlocked, "reserved"),
    ("http://192.0.2.1/", OutboundBlocked, "documentation"),
    ("http://[::1]/", OutboundBlocked, "loopback"),
    ("http://[::]/", OutboundBlocked, "unspecified"),
    ("http://[fd00:ec2::254]/latest/meta-data/", OutboundBlocked, "metadata"),
    ("http://[fc00::1]/", OutboundBlocked, "unique-local"),
    ("http://[fd12:3456:789a::1]/", OutboundBlocked, "unique-local"),
    ("http://[fe80::1]/", OutboundBlocked, "link-local"),
    ("http://[fe80::1%25eth0]/", InvalidOutboundRequest, "zone identifier"),
    ("http://[ff02::1]/", OutboundBlocked, "multicast"),
    ("http://[2001:db8::1]/", OutboundBlocked, "documentation"),
    ("http://[::ffff:127.0.0.1]/", OutboundBlocked, "::ffff:127.0.0.1 means 127.0.0.1"),
    ("http://[::ffff:7f00:1]/", OutboundBlocked, "::ffff:7f00:1 means 127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", OutboundBlocked, "metadata"),
    ("http://[::127.0.0.1]/", OutboundBlocked, "IPv4-compatible"),
    ("http://[64:ff9b::a9fe:a9fe]/", OutboundBlocked, "NAT64 address embedding 169.254.169.254"),
    ("http://[64:ff9b::c0a8:101]/", OutboundBlocked, "NAT64 address embedding 192.168.1.1"),
    ("http://[2002:c0a8:101::1]/", OutboundBlocked, "6to4 address embedding 192.168.1.1"),
    ("http://[2002:7f00:1::]/", OutboundBlocked, "6to4 address embedding 127.0.0.1"),
    ("http://2130706433/", OutboundBlocked, "2130706433 means 127.0.0.1"),
    ("http://017700000001/", OutboundBlocked, "means 127.0.0.1"),
    ("http://0177.0.0.1/", OutboundBlocked, "0177.0.0.1 means 127.0.0.1"),
    ("http://0x7f.1/", OutboundBlocked, "0x7f.1 means 127.0.0.1"),
    ("http://0x7f000001/", OutboundBlocked, "means 127.0.0.1"),
    ("http://127.1/", OutboundBlocked, "127.1 means 127.0.0.1"),
    ("http://10.1/", OutboundBlocked, "10.1 means 10.0.0.1"),
    ("http://0xa9.0xfe.0xa9.0xfe/", OutboundBlocked, "metadata"),
    ("http://0251.0376.0251.0376/", OutboundBlocked, "metadata"),
    ("http://127.0.0.1.:80/", OutboundBlocked, "loopback"),
    ("http://1.2.3.4.5/", InvalidOutboundRequest, "looks like an IPv4 address"),
    ("http://internal.99/", InvalidOutboundRequest, "looks like an IPv4 address"),
    ("http://1.2.3.256/", InvalidOutboundRequest, "out of range"),
    ("file:///etc/passwd", InvalidOutboundRequest, "'file:'"),
    ("gopher://127.0.0.1:25/_HELO", InvalidOutboundRequest, "'gopher:'"),
    ("ftp://example.com/", InvalidOutboundRequest, "'ftp:'"),
    ("dict://127.0.0.1:11211/stats", InvalidOutboundRequest, "'dict:'"),
    ("data:text/plain,hello", InvalidOutboundRequest, "'data:'"),
    ("javascript:alert(1)", InvalidOutboundRequest, "'javascript:'"),
    ("//example.com/relative", InvalidOutboundRequest, "relative URL"),
    ("http://user:pass@example.com/", InvalidOutboundRequest, "user name or password"),
    ("http://example.com@127.0.0.1/", InvalidOutboundRequest, "user name or password"),
    ("http://example.com/\r\nX-Injected: 1", InvalidOutboundRequest, "control character"),
    ("http://example.com\x00.evil/", InvalidOutboundRequest, "control character"),
    ("http://ex%2eample.com/", InvalidOutboundRequest, "invalid host name"),
    ("http://example.com:70000/", InvalidOutboundRequest, "outside 1-65535"),
]


@pytest.mark.parametrize(("url", "error", "words"), LITERAL_TARGETS)
def test_literal_targets_are_refused_before_connecting(
    url: str, error: type[LoomError], words: str
) -> None:
    network = FakeNetwork()
    with pytest.raises(error) as refused:
        fetch(url, network=network)
    assert words in refused.value.message
    assert refused.value.solution
    assert network.connects == []


def test_the_corpus_covers_at_least_thirty_targets() -> None:
    assert len(LITERAL_TARGETS) + len(NAME_TARGETS) + len(REDIRECT_TARGETS) >= 30


@pytest.mark.parametrize("url", ["http://169.254.169.254/", "http://[fd00:ec2::254]/"])
def test_metadata_stays_refused_when_allowlisted(url: str) -> None:
    with pytest.raises(OutboundBlocked) as refused:
        fetch(url, allowlist=["169.254.169.254", "fd00:ec2::254"])
    assert "never reachable" in refused.value.solution


def test_blocked_addresses_name_the_allowlist_remedy() -> None:
    with pytest.raises(OutboundBlocked) as refused:
        fetch("http://10.0.0.1:8080/x")
    assert "'10.0.0.1:8080'" in refused.value.solution
    assert "outbound allowlist" in refused.value.solution


# (name, DNS answers, words the message must hold): names that resolve inward are refused.
NAME_TARGETS: list[tuple[str, list[str], str]] = [
    ("internal.example", ["10.0.0.7"], "internal.example resolved to 10.0.0.7"),
    ("localhost", ["127.0.0.1", "::1"], "loopback"),
    ("metadata.example", ["169.254.169.254"], "metadata"),
    ("v6.example", ["fd00::1"], "unique-local"),
    ("mapped.example", ["::ffff:10.1.2.3"], "resolved to 10.1.2.3"),
    ("mixed.example", ["10.9.9.9", "198.51.100.7"], "10.9.9.9"),
    ("nat64.example", ["64:ff9b::a00:1"], "NAT64 address embedding 10.0.0.1"),
]


@pytest.mark.parametrize(("name", "answers", "words"), NAME_TARGETS)
def test_names_resolving_inward_are_refused(name: str, answers: list[str], words: str) -> None:
    network = FakeNetwork()
    dns = FakeDns(**{name: [answers]})
    with pytest.raises(OutboundBlocked) as refused:
        fetch(f"https://{name}/", network=network, resolver=dns)
    assert words in refused.value.message
    assert dns.lookups == [name]
    assert network.connects == []


def test_one_blocked_answer_refuses_the_name_even_if_another_is_admitted() -> None:
    """api.example is allowlisted, so its loopback answer is fine; its second answer is the
    metadata address, which no allowlist admits: the whole name is refused."""
    network = FakeNetwork()
    dns = FakeDns(api_example=[["127.0.0.1", "169.254.169.254"]])
    with pytest.raises(OutboundBlocked, match="metadata"):
        fetch("http://api.example/", network=network, resolver=dns, allowlist=["api.example"])
    assert network.connects == []


def test_an_allowlisted_address_does_not_admit_names_that_resolve_to_it() -> None:
    dns = FakeDns(rebind_example=[["10.0.0.5"]])
    with pytest.raises(OutboundBlocked, match=r"rebind\.example resolved to 10\.0\.0\.5"):
        fetch("http://rebind.example/", resolver=dns, allowlist=["10.0.0.5"])


def test_the_checked_address_is_pinned_and_dns_is_asked_once_per_request() -> None:
    """DNS rebinding: the first answer passes the check, every later one is the metadata
    address. The connection goes to the checked address (never to the name, so the HTTP
    library cannot look it up again), while TLS SNI and the Host header keep the name."""
    network = FakeNetwork(http(200, body=b"ok"))
    dns = FakeDns(api_example=[["127.0.0.1"], ["169.254.169.254"]])

    async def go() -> OutboundResponse:
        async with OutboundClient(
            allowlist=["api.example"], resolver=dns, network_backend=network
        ) as client:
            first = await client.request("GET", "https://api.example/v1")
            assert dns.lookups == ["api.example"]
            with pytest.raises(OutboundBlocked, match="metadata"):
                await client.request("GET", "https://api.example/v1")
            return first

    response = run(go())
    assert response.status == 200 and response.content == b"ok"
    assert network.connects == [("127.0.0.1", 443)]
    assert network.tls_names == ["api.example"]
    assert b"host: api.example\r\n" in b"".join(network.written).lower()
    assert dns.lookups == ["api.example", "api.example"]


def test_allowlist_admits_exact_entries_only() -> None:
    allow = Allowlist(
        ["svc.internal:8443", "db.internal", "[::1]:9000", "10.0.0.5", "Caps.Internal."]
    )
    admitted = [
        "https://svc.internal:8443/",
        "http://db.internal:1234/",
        "http://[::1]:9000/",
        "http://10.0.0.5/",
        "http://0xa000005/",  # the same address, spelled in hex
        "http://caps.internal/",
    ]
    refused = [
        "https://svc.internal/",  # other port
        "https://a.svc.internal:8443/",  # subdomain
        "https://svc.internal.evil.com:8443/",  # suffix
        "http://[::1]:9001/",
        "http://10.0.0.6/",
    ]
    for url in admitted:
        assert allow.admits(parse_url(url)), url
    for url in refused:
        assert not allow.admits(parse_url(url)), url


@pytest.mark.parametrize("entry", ["svc:0", "svc:99999", "svc:http", "a b", "[::1", "1.2.3.4.5"])
def test_allowlist_entries_are_validated(entry: str) -> None:
    with pytest.raises(InvalidOutboundRequest, match="allowlist entry"):
        Allowlist([entry])


def test_a_public_address_has_no_refusal() -> None:
    # Pure classification, no connection: the rules must not refuse the public internet.
    for text in ("8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"):
        assert refusal(ip_address(text)) is None, text


# Redirects from an allowlisted server, each to a target the rules refuse.
REDIRECT_TARGETS = [
    ("http://10.0.0.1/admin", OutboundBlocked),
    ("http://[::1]:8080/", OutboundBlocked),
    ("http://169.254.169.254/latest/meta-data/iam/", OutboundBlocked),
    ("http://0x7f.1:8080/", OutboundBlocked),
    ("file:///etc/passwd", InvalidOutboundRequest),
    ("gopher://127.0.0.1:6379/_FLUSHALL", InvalidOutboundRequest),
    ("http://user:pw@api.example/", InvalidOutboundRequest),
]


@pytest.mark.parametrize(("location", "error"), REDIRECT_TARGETS)
def test_every_redirect_is_checked_again(location: str, error: type[LoomError]) -> None:
    network = FakeNetwork(http(302, headers=[("Location", location)]))
    dns = FakeDns(api_example=[["127.0.0.1"]])
    with pytest.raises(error) as refused:
        fetch("http://api.example/", network=network, resolver=dns, allowlist=["api.example"])
    assert "redirect" in refused.value.message
    assert network.connects == [("127.0.0.1", 80)]


def test_authorization_is_dropped_when_a_redirect_leaves_the_origin() -> None:
    network = FakeNetwork(
        http(307, headers=[("Location", "http://other.example/next")]),
        http(200, body=b"done"),
    )
    dns = FakeDns(api_example=[["127.0.0.1"]], other_example=[["127.0.0.2"]])
    response = fetch(
        "http://api.example/",
        network=network,
        resolver=dns,
        allowlist=["api.example", "other.example"],
        headers={"Authorization": "Bearer s3cr3t-token", "X-Api-Key": "k3y-value", "X-Keep": "1"},
        sensitive_headers=["x-api-key"],
    )
    assert response.content == b"done"
    first, second = (w.decode() for w in network.written if w.startswith(b"GET"))
    assert "s3cr3t-token" in first and "k3y-value" in first
    assert "s3cr3t-token" not in second and "k3y-value" not in second
    assert "X-Keep: 1" in second
    assert network.connects == [("127.0.0.1", 80), ("127.0.0.2", 80)]


@pytest.mark.parametrize(
    ("headers", "method", "words"),
    [
        ({"X-Evil": "a\r\nInjected: 1"}, "GET", "line break"),
        ({"X-Evil": "a\nInjected: 1"}, "GET", "line break"),
        ({"X-Evil": "a\x00b"}, "GET", "control character"),
        ({"X-Name": "Zoë"}, "GET", "non-ASCII"),
        ({"X-Evil\r\nInjected": "1"}, "GET", "not a valid HTTP token"),
        ({"X Evil": "1"}, "GET", "not a valid HTTP token"),
        ({"Host": "internal.example"}, "GET", "set by Loom"),
        ({"Transfer-Encoding": "chunked"}, "POST", "set by Loom"),
        ({}, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET", "not a valid token"),
    ],
)
def test_header_and_method_injection_is_refused(
    headers: dict[str, str], method: str, words: str
) -> None:
    network = FakeNetwork()
    with pytest.raises(InvalidOutboundRequest) as refused:
        fetch("http://api.example/", network=network, method=method, headers=headers)
    assert words in refused.value.message
    assert "\r" not in refused.value.message and "Injected: 1" not in refused.value.message
    assert network.connects == []


def test_too_many_redirects_stop_at_five() -> None:
    loop = http(302, headers=[("Location", "/again")])
    network = FakeNetwork(*[loop] * 6)
    dns = FakeDns(api_example=[["127.0.0.1"]])
    with pytest.raises(LoomError, match="more than 5 times"):
        fetch("http://api.example/", network=network, resolver=dns, allowlist=["api.example"])
    assert len(network.connects) == 6
