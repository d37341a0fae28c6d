"""The middleware stack, against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import logging
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse

from loom.api.app import create_app
from loom.api.middleware import RouteMetrics
from loom.api.middleware.rate_limit import TokenBuckets, client_address
from loom.config import Settings
from loom.db import Database, DatabaseUrls
from loom.observability import request_id_var
from tests.utils.procs import free_port

LIMIT = 10 * 1024 * 1024
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}


class Calls:
    def __init__(self) -> None:
        self.echo = 0


def _test_app(calls: Calls, **settings: Any) -> FastAPI:
    router = APIRouter()

    @router.post("/v1/test/echo")
    async def echo(request: Request) -> dict[str, Any]:
        calls.echo += 1
        body = await request.body()
        return {
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "content_encoding": request.headers.get("content-encoding"),
        }

    @router.get("/v1/test/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @router.get("/v1/test/boom")
    def boom() -> None:
        raise RuntimeError("handler bug")

    @router.post("/v1/auth/test-login")
    def login() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/v1/test/events")
    async def events() -> StreamingResponse:
        async def stream() -> Any:
            for n in range(3):
                yield f"data: {n}\n\n"
                await asyncio.sleep(0.7)

        return StreamingResponse(stream(), media_type="text/event-stream")

    # Never connected: these tests exercise HTTP only.
    dead = "host=127.0.0.1 port=1 dbname=loom user=loom_app"
    db = Database(DatabaseUrls(owner=dead, app=dead, embedded=False), min_size=0)
    return create_app(lambda: db, settings=Settings(**settings), routers=[router])


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            # Loom's middleware writes the access log; uvicorn's would hold query strings.
            access_log=False,
            # uvicorn would otherwise take X-Forwarded-For from 127.0.0.1 peers as the
            # client: the rate limiter alone decides whom to trust (trusted_proxies).
            proxy_headers=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Calls, FastAPI]]:
    calls = Calls()
    app = _test_app(calls, cors_origins=["https://app.example"])
    with serve(app) as url:
        yield url, calls, app


@pytest.fixture
def client(server: tuple[str, Calls, FastAPI]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    return error


# -- body limit ----------------------------------------------------------------------------


def test_declared_length_over_the_limit_is_refused_before_the_handler_runs(
    server: tuple[str, Calls, FastAPI],
) -> None:
    url, calls, _ = server
    before = calls.echo
    # Only the headers are sent: the answer comes without the server reading any body.
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/test/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (11 * 1024 * 1024)
        )
        head = sock.recv(65536).decode()
    assert head.startswith("HTTP/1.1 413 ")
    assert calls.echo == before


def test_an_11_mb_body_gets_413_and_the_handler_never_runs(
    server: tuple[str, Calls, FastAPI], client: httpx.Client
) -> None:
    calls = server[1]
    before = calls.echo
    response = client.post("/v1/test/echo", content=b"x" * (11 * 1024 * 1024))
    error = _error(response, 413, "payload_too_large")
    assert str(LIMIT) in error["message"]
    assert calls.echo == before


def test_a_chunked_body_over_the_limit_gets_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"y" * (1024 * 1024)

    response = client.post("/v1/test/echo", content=chunks())
    _error(response, 413, "payload_too_large")


def test_a_body_under_the_limit_reaches_the_handler(client: httpx.Client) -> None:
    body = b"z" * (LIMIT - 1)
    response = client.post("/v1/test/echo", content=body)
    assert response.status_code == 200
    assert response.json()["size"] == len(body)


def test_gzip_and_deflate_bodies_arrive_inflated_without_the_encoding_header(
    client: httpx.Client,
) -> None:
    payload = json.dumps({"text": "hello " * 10_000}).encode()
    for encoding, compressed in (
        ("gzip", gzip.compress(payload)),
        ("deflate", zlib.compress(payload)),
    ):
        response = client.post(
            "/v1/test/echo", content=compressed, headers={"Content-Encoding": encoding}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "content_encoding": None,
        }


def test_multi_member_gzip_is_read_whole(client: httpx.Client) -> None:
    response = client.post(
        "/v1/test/echo",
        content=gzip.compress(b"first ") + gzip.compress(b"second"),
        headers={"Content-Encoding": "gzip"},
    )
    assert response.json()["size"] == len(b"first second")


def _bomb(members: int, member_bytes: int) -> bytes:
    """A gzip body of ``members * member_bytes`` zero bytes, compressed incrementally.

    Gzip allows members back to back; repeating one member keeps building a 1 GiB bomb
    under half a second (one 1 GiB member takes about 5 s), and the first member alone is
    far over the limit.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    member = b"".join(compressor.compress(zeros) for _ in range(member_bytes // len(zeros)))
    return (member + compressor.flush()) * members


def _rss_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def test_a_gzip_bomb_gets_413_quickly_in_bounded_memory(client: httpx.Client) -> None:
    bomb = _bomb(16, 64 * 1024 * 1024)  # 1 GiB of zeros in about 1 MiB
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak-RSS count (VmHWM)
    rss_before = _rss_kib("VmRSS")
    started = time.perf_counter()
    response = client.post("/v1/test/echo", content=bomb, headers={"Content-Encoding": "gzip"})
    elapsed = time.perf_counter() - started
    growth_mib = (_rss_kib("VmHWM") - rss_before) / 1024
    _error(response, 413, "payload_too_large")
    assert elapsed < 2.0
    # The server holds at most the 10 MiB limit, never the gigabyte.
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.1f} MiB"
    logging.getLogger(__name__).info(
        "gzip bomb: 413 after %.3f s, peak RSS growth %.1f MiB", elapsed, growth_mib
    )


def test_corrupt_or_truncated_gzip_gets_400(client: httpx.Client) -> None:
    whole = gzip.compress(b"a" * 5000)
    for body in (b"\x1f\x8b\x08\x00garbage-not-deflate", whole[: len(whole) // 2]):
        response = client.post("/v1/test/echo", content=body, headers={"Content-Encoding": "gzip"})
        _error(response, 400, "bad_request")


def test_other_content_encodings_get_415(client: httpx.Client) -> None:
    response = client.post("/v1/test/echo", content=b"\x00", headers={"Content-Encoding": "br"})
    _error(response, 415, "unsupported_content_encoding")


# -- request id, security headers ----------------------------------------------------------


def test_a_valid_request_id_is_taken_and_echoed(client: httpx.Client) -> None:
    response = client.get("/v1/test/nowhere", headers={"X-Request-ID": "trace-1.2_3"})
    assert response.headers["x-request-id"] == "trace-1.2_3"
    assert _error(response, 404, "not_found")["request_id"] == "trace-1.2_3"


@pytest.mark.parametrize("given", [None, "has spaces", "x" * 129, "a/b", "semi;colon"])
def test_a_missing_or_unsafe_request_id_is_replaced(
    client: httpx.Client, given: str | None
) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    response = client.get("/v1/test/items/1", headers=headers)
    generated = response.headers["x-request-id"]
    assert generated != given
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", generated)


def test_a_handler_crash_is_a_500_with_the_request_id_and_headers(client: httpx.Client) -> None:
    response = client.get("/v1/test/boom", headers={"X-Request-ID": "crash-1"})
    error = _error(response, 500, "internal")
    assert error["request_id"] == "crash-1"
    assert "handler bug" not in response.text
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_security_headers_on_every_response(client: httpx.Client) -> None:
    replies = [
        client.get("/v1/test/items/1"),
        client.get("/v1/test/nowhere"),
        client.post("/v1/test/echo", content=b"{}", headers={"Content-Encoding": "br"}),
    ]
    for response in replies:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value
        assert response.headers["content-security-policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )
        assert response.headers["cache-control"] == "no-store"


def test_openapi_outside_v1_is_not_marked_no_store(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert "cache-control" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


def test_the_docs_pages_get_a_policy_for_exactly_their_assets(client: httpx.Client) -> None:
    swagger = client.get("/docs")
    csp = swagger.headers["content-security-policy"]
    script = re.search(rb"<script>(.*?)</script>", swagger.content, re.DOTALL)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1)).digest()).decode()
    assert f"script-src https://cdn.jsdelivr.net 'sha256-{digest}';" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
    redoc = client.get("/redoc").headers["content-security-policy"]
    assert "script-src https://cdn.jsdelivr.net;" in redoc
    assert "worker-src blob:" in redoc
    assert "font-src https://fonts.gstatic.com" in redoc


# -- CORS ----------------------------------------------------------------------------------


def _preflight(client: httpx.Client, origin: str) -> httpx.Response:
    return client.options(
        "/v1/test/echo",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


def test_cors_preflight_is_allowed_for_a_configured_origin(client: httpx.Client) -> None:
    response = _preflight(client, "https://app.example")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "x-request-id", "x-api-key"):
        assert header in allowed
    simple = client.get("/v1/test/items/1", headers={"Origin": "https://app.example"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example"
    assert "X-Request-ID" in simple.headers["access-control-expose-headers"]


def test_cors_is_refused_for_other_origins(client: httpx.Client) -> None:
    response = _preflight(client, "https://evil.example")
    _error(response, 400, "cors_refused")
    assert not any(name.startswith("access-control-allow") for name in response.headers)
    simple = client.get("/v1/test/items/1", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_no_configured_origins_means_no_cors_headers_at_all() -> None:
    with serve(_test_app(Calls())) as url, httpx.Client(base_url=url) as client:
        response = _preflight(client, "https://app.example")
        simple = client.get("/v1/test/items/1", headers={"Origin": "https://app.example"})
    for reply in (response, simple):
        assert not any(name.startswith("access-control-") for name in reply.headers)
    _error(response, 405, "method_not_allowed")


# -- rate limits ---------------------------------------------------------------------------


def test_buckets_refill_continuously() -> None:
    buckets = TokenBuckets(60)  # one token a second
    for _ in range(60):
        assert buckets.wait_seconds("k", 0.0) == 0.0
        buckets.take("k", 0.0)
    assert buckets.wait_seconds("k", 0.0) == pytest.approx(1.0)
    assert buckets.wait_seconds("k", 0.25) == pytest.approx(0.75)
    assert buckets.wait_seconds("k", 1.0) == 0.0


def test_buckets_forget_idle_keys_and_stay_bounded() -> None:
    buckets = TokenBuckets(10, max_keys=100)
    for n in range(50):
        buckets.take(f"idle-{n}", 0.0)
    buckets.take("busy", 30.0)
    assert len(buckets) == 51
    # A minute later the idle buckets are full again: dropping them loses nothing.
    buckets.take("busy", 61.0)
    assert len(buckets) == 1
    for n in range(1000):
        buckets.take(f"flood-{n}", 62.0)
    assert len(buckets) == 100
    assert buckets.wait_seconds("flood-999", 62.0) == 0.0  # the newest are kept


def test_the_client_address_counts_trusted_hops_from_the_right() -> None:
    def scope(*forwarded: str) -> dict[str, Any]:
        headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
        return {"type": "http", "client": ("10.0.0.1", 5000), "headers": headers}

    assert client_address(scope("1.1.1.1"), 0) == "10.0.0.1"
    assert client_address(scope("6.6.6.6, 1.1.1.1"), 1) == "1.1.1.1"
    assert client_address(scope("6.6.6.6, 1.1.1.1", "2.2.2.2"), 2) == "1.1.1.1"
    assert client_address(scope("1.1.1.1"), 3) == "1.1.1.1"
    assert client_address(scope(), 1) == "10.0.0.1"


def test_the_address_limit_answers_429_with_retry_after_and_ignores_forwarded_for() -> None:
    app = _test_app(Calls(), ip_rate_limit_per_minute=5)
    with serve(app) as url, httpx.Client(base_url=url) as client:
        statuses = [client.get("/v1/test/items/1").status_code for _ in range(5)]
        limited = client.get("/v1/test/items/1")
        spoofed = [
            client.get("/v1/test/items/1", headers={"X-Forwarded-For": f"203.0.113.{n}"})
            for n in range(3)
        ]
    assert statuses == [200] * 5
    error = _error(limited, 429, "rate_limited")
    assert "5 per minute" in error["message"]
    # One token comes back every 12 s.
    assert 1 <= int(limited.headers["retry-after"]) <= 12
    assert [r.status_code for r in spoofed] == [429] * 3


def test_with_a_trusted_proxy_the_forwarded_address_is_the_key() -> None:
    app = _test_app(Calls(), ip_rate_limit_per_minute=2, trusted_proxies=1)
    with serve(app) as url, httpx.Client(base_url=url) as client:

        def get(forwarded: str) -> int:
            return client.get(
                "/v1/test/items/1", headers={"X-Forwarded-For": forwarded}
            ).status_code

        first = [get("198.51.100.1") for _ in range(3)]
        # Whatever the client wrote on the left, the proxy appended the address it saw.
        spoofed = get("203.0.113.9, 198.51.100.1")
        other = get("198.51.100.2")
    assert first == [200, 200, 429]
    assert spoofed == 429
    assert other == 200


def test_the_credential_limit_is_per_token() -> None:
    app = _test_app(Calls(), rate_limit_per_minute=2)
    with serve(app) as url, httpx.Client(base_url=url) as client:

        def get(headers: dict[str, str]) -> int:
            return client.get("/v1/test/items/1", headers=headers).status_code

        token_a = [get({"Authorization": "Bearer token-a"}) for _ in range(3)]
        token_b = get({"Authorization": "Bearer token-b"})
        key = [get({"X-API-Key": "lk_key"}) for _ in range(3)]
    assert token_a == [200, 200, 429]
    assert token_b == 200
    assert key == [200, 200, 429]


def test_public_and_auth_routes_have_a_tighter_address_limit() -> None:
    app = _test_app(Calls(), public_rate_limit_per_minute=2)
    with serve(app) as url, httpx.Client(base_url=url) as client:
        logins = [client.post("/v1/auth/test-login").status_code for _ in range(3)]
        other = client.get("/v1/test/items/1").status_code
    assert logins == [200, 200, 429]
    assert other == 200


# -- streaming, metrics, access log --------------------------------------------------------


def test_event_streams_pass_through_unbuffered(client: httpx.Client) -> None:
    started = time.perf_counter()
    arrivals: list[float] = []
    with client.stream("GET", "/v1/test/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.perf_counter() - started)
    assert len(arrivals) == 3
    # The stream lasts about 2.1 s; the first event must not wait for its end.
    assert arrivals[0] < 0.5
    assert arrivals[-1] - arrivals[0] > 1.0


def test_metrics_use_route_templates(
    server: tuple[str, Calls, FastAPI], client: httpx.Client
) -> None:
    metrics: RouteMetrics = server[2].state.metrics
    before = metrics.snapshot()
    for item in ("a", "b", "c"):
        assert client.get(f"/v1/test/items/{item}").status_code == 200
    client.post("/v1/test/echo", content=b"{}", headers={"Content-Encoding": "br"})
    client.get("/v1/test/boom")

    def grew(route: str, field: str) -> int:
        previous = getattr(before[route], field) if route in before else 0
        return int(getattr(after[route], field) - previous) if route in after else 0

    # A request is counted when its response has been sent, which the client may see first.
    deadline = time.monotonic() + 5
    after = metrics.snapshot()
    while grew("GET /v1/test/boom", "errors_5xx") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
        after = metrics.snapshot()

    assert grew("GET /v1/test/items/{item_id}", "count") == 3
    assert grew("POST /v1/test/echo", "errors_4xx") == 1
    assert grew("GET /v1/test/boom", "errors_5xx") == 1
    assert not any("/items/a" in route for route in after)
    stats = after["GET /v1/test/items/{item_id}"]
    assert 0 < stats.p50_ms <= stats.p99_ms


class _RequestIdOfRecord(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def test_one_access_line_per_request_without_query_or_headers(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="loom.access")
    caplog.handler.addFilter(_RequestIdOfRecord())
    response = client.get(
        "/v1/test/items/secret-id?token=query-secret",
        headers={"X-Request-ID": "access-1", "Authorization": "Bearer header-secret"},
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 2

    def lines() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "loom.access" and r.__dict__.get("request_id") == "access-1"
        ]

    while not lines() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(lines()) == 1
    record = lines()[0]
    assert re.fullmatch(
        r"request method=GET route=/v1/test/items/\{item_id\} status=200 duration_ms=\d+\.\d",
        record.getMessage(),
    )
    assert record.__dict__["route"] == "/v1/test/items/{item_id}"
    assert record.__dict__["status"] == 200
    # httpx logs the client's own URL; pytest captures uvicorn.access even when disabled.
    server_side = [
        r.getMessage() for r in caplog.records if r.name not in ("httpx", "uvicorn.access")
    ]
    for secret in ("query-secret", "header-secret", "secret-id"):
        assert not any(secret in message for message in server_side)
