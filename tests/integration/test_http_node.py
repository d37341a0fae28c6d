"""ACTION.HTTP_REQUEST against real HTTP servers on 127.0.0.1, allowlisted through fake
NodeServices that lend typed credentials."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from loom.errors import InvalidInput, LoomError, NotFound
from loom.net import InvalidOutboundRequest, OutboundBlocked, OutboundTooLarge
from loom.nodes import http_request
from loom.nodes.base import NodeContext, NodeResult
from loom.nodes.http_request import (
    SPEC,
    HttpServerError,
    HttpStatusError,
    OAuthTokenFailed,
)
from loom.nodes.registry import get_spec
from loom.secrets.types import ApiKey, Basic, BearerToken, CredentialData, OAuth2Client, Smtp
from tests.utils.fake_services import FakeNodeServices
from tests.utils.loopback_http import LoopbackServer, Reply, Seen, serve

MB = 1024 * 1024
TOKEN = "bearer-secret-0123456789abcdef"
PASSWORD = "basic-password-0123456789"
API_KEY = "api-key-secret-0123456789"
CLIENT_SECRET = "client-secret-0123456789abcdef"
SECRETS = (TOKEN, PASSWORD, API_KEY, CLIENT_SECRET)


class Leaks:
    """Everything a node call produced that a user or a log could see."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def output(self, output: Any) -> Any:
        self.texts.append(json.dumps(output))
        return output

    def error(self, error: BaseException) -> None:
        self.texts.append(f"{error!s} {error!r}")
        if isinstance(error, LoomError):
            self.texts.append(json.dumps(error.to_dict()))

    def assert_clean(self) -> None:
        assert self.texts
        for text in self.texts:
            for secret in SECRETS:
                assert secret not in text


LEAKS = Leaks()


WORKSPACE = uuid.uuid4()


def execute(parameters: dict[str, Any], services: FakeNodeServices | None) -> dict[str, Any]:
    ctx = NodeContext(
        workspace_id=WORKSPACE,
        run_id=uuid.uuid4(),
        node_run_id=uuid.uuid4(),
        node_id="call",
        attempt=1,
        run_input={},
        upstream={},
        services=services,
    )
    run = SPEC.execute
    assert run is not None

    async def go() -> NodeResult:
        return await run(ctx, SPEC.parameters.model_validate(parameters), {})

    try:
        result = asyncio.run(go())
    except Exception as exc:
        LEAKS.error(exc)
        raise
    output: dict[str, Any] = LEAKS.output(result.output)
    return output


def seen_as_json(seen: Seen) -> Reply:
    body = {
        "method": seen.method,
        "path": seen.path,
        "query": seen.query,
        "headers": seen.headers,
        "body": seen.body.decode(),
    }
    return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


@pytest.fixture
def echo() -> Iterator[LoopbackServer]:
    with serve(seen_as_json) as server:
        yield server


def test_registered_with_side_effects() -> None:
    spec = get_spec("ACTION", "HTTP_REQUEST")
    assert spec is SPEC and spec.side_effects


@pytest.mark.parametrize("method", ["GET", "post", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_headers_and_query_reach_the_server(echo: LoopbackServer, method: str) -> None:
    output = execute(
        {
            "method": method,
            "url": echo.url("/things?fixed=1"),
            "headers": {"X-Trace": "abc", "Accept": "application/json"},
            "query": {"page": 2, "tag": ["a", "b"], "on": True},
        },
        FakeNodeServices([echo.where]),
    )
    seen = output["body"]
    assert output["status"] == 200
    assert seen["method"] == method.upper()
    assert seen["path"] == "/things"
    assert seen["query"] == {"fixed": ["1"], "page": ["2"], "tag": ["a", "b"], "on": ["true"]}
    assert seen["headers"]["x-trace"] == "abc"
    assert output["url"] == echo.url("/things?fixed=1&page=2&tag=a&tag=b&on=true")
    assert output["headers"]["content-type"] == "application/json"
    assert output["elapsed_ms"] > 0


def test_head_has_no_body(echo: LoopbackServer) -> None:
    output = execute({"method": "HEAD", "url": echo.url("/")}, FakeNodeServices([echo.where]))
    assert (output["status"], output["body"]) == (200, None)


@pytest.mark.parametrize(
    ("body", "content_type", "sent"),
    [
        ({"type": "json", "value": {"a": [1, 2]}}, "application/json", '{"a":[1,2]}'),
        (
            {"type": "form", "value": {"name": "Ada L", "n": 3, "x": ["1", "2"]}},
            "application/x-www-form-urlencoded",
            "name=Ada+L&n=3&x=1&x=2",
        ),
        (
            {"type": "raw", "value": "<a>ü</a>", "content_type": "application/xml"},
            "application/xml",
            "<a>ü</a>",
        ),
    ],
)
def test_bodies(echo: LoopbackServer, body: dict[str, Any], content_type: str, sent: str) -> None:
    output = execute(
        {"method": "POST", "url": echo.url("/"), "body": body}, FakeNodeServices([echo.where])
    )
    seen = output["body"]
    assert seen["headers"]["content-type"] == content_type
    assert seen["body"] == sent
    # POSTs carry the node's idempotency key, so retries can be recognised by the server.
    assert seen["headers"]["idempotency-key"].endswith(":1")


def test_response_modes() -> None:
    payload = bytes(range(256))

    def answer(seen: Seen) -> Reply:
        kinds = {
            "/json": (b'{"n": 1}', "application/problem+json"),
            "/text": ("héllo".encode("latin-1"), "text/plain; charset=latin-1"),
            "/bin": (payload, "application/octet-stream"),
            "/bad": (b"{not json", "application/json"),
        }
        body, kind = kinds[seen.path]
        return Reply(200, body, {"Content-Type": kind})

    with serve(answer) as server:
        services = FakeNodeServices([server.where])

        def body(path: str, mode: str) -> Any:
            return execute({"url": server.url(path), "response": mode}, services)["body"]

        assert body("/json", "auto") == {"n": 1}
        assert body("/text", "auto") == "héllo"
        assert base64.b64decode(body("/bin", "auto")) == payload
        assert base64.b64decode(body("/json", "binary")) == b'{"n": 1}'
        assert body("/json", "text") == '{"n": 1}'
        assert body("/bad", "text") == "{not json"
        with pytest.raises(LoomError, match="not valid JSON"):
            body("/bad", "auto")


def test_output_headers_are_lower_cased_keep_cookies_and_never_echo_authorization() -> None:
    def answer(seen: Seen) -> Reply:
        headers = {"X-Custom": "v", "Set-Cookie": "a=1", "Authorization": "Bearer server-side"}
        return Reply(200, b"ok", headers)

    with serve(answer) as server:
        output = execute({"url": server.url("/")}, FakeNodeServices([server.where]))
    assert output["headers"]["x-custom"] == "v"
    assert output["headers"]["set-cookie"] == "a=1"
    assert "authorization" not in output["headers"]


def test_repeated_set_cookie_headers_become_a_list() -> None:
    def answer(seen: Seen) -> Reply:
        return Reply(200, b"ok", {"Set-Cookie": "a=1", "set-cookie": "b=2"})

    with serve(answer) as server:
        output = execute({"url": server.url("/")}, FakeNodeServices([server.where]))
    assert output["headers"]["set-cookie"] == ["a=1", "b=2"]


CREDENTIALS: dict[str, CredentialData] = {
    "bearer": BearerToken(token=SecretStr(TOKEN)),
    "basic": Basic(username="ada", password=SecretStr(PASSWORD)),
    "apikey": ApiKey(header="X-Api-Key", value=SecretStr(API_KEY)),
    "smtp": Smtp(host="mail.example", port=587),
}
EXPECTED_HEADER = {
    "bearer": ("authorization", f"Bearer {TOKEN}"),
    "basic": ("authorization", "Basic " + base64.b64encode(f"ada:{PASSWORD}".encode()).decode()),
    "apikey": ("x-api-key", API_KEY),
}


@pytest.mark.parametrize("credential_id", ["bearer", "basic", "apikey"])
def test_static_credentials_are_sent_and_never_echoed(credential_id: str) -> None:
    """The server echoes every header it got; the node's output must still not carry the
    secret (redacted), and the server did get it."""
    with serve(seen_as_json) as server:
        output = execute(
            {"url": server.url("/"), "auth": {"credential_id": credential_id}},
            FakeNodeServices([server.where], CREDENTIALS),
        )
        name, value = EXPECTED_HEADER[credential_id]
        assert server.seen[0].headers[name] == value
    assert output["body"]["headers"][name].endswith("[redacted]")
    LEAKS.assert_clean()


def test_credential_errors_are_clear(echo: LoopbackServer) -> None:
    services = FakeNodeServices([echo.where], CREDENTIALS)
    with pytest.raises(InvalidInput, match="cannot authenticate HTTP"):
        execute({"url": echo.url("/"), "auth": {"credential_id": "smtp"}}, services)
    with pytest.raises(NotFound):
        execute({"url": echo.url("/"), "auth": {"credential_id": "missing"}}, services)
    with pytest.raises(InvalidInput, match="no credentials are available"):
        execute({"url": echo.url("/"), "auth": {"credential_id": "bearer"}}, None)
    with pytest.raises(InvalidInput, match="set both in headers and by the auth"):
        execute(
            {
                "url": echo.url("/"),
                "headers": {"authorization": "Bearer mine"},
                "auth": {"credential_id": "bearer"},
            },
            services,
        )
    assert echo.seen == []


class TokenServer:
    """An OAuth2 token endpoint (/token) and an API (/api) that accepts only the latest
    token, on one loopback server."""

    def __init__(self, expires_in: int = 3600, *, api_refuses_all: bool = False) -> None:
        self.expires_in = expires_in
        self.api_refuses_all = api_refuses_all
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, seen: Seen) -> Reply:
        if seen.path == "/token":
            return self.token(seen)
        bearer = seen.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_refuses_all or bearer not in self.issued or bearer in self.revoked:
            return Reply(401, b'{"error":"invalid_token"}', {"Content-Type": "application/json"})
        return Reply(200, b'{"data":"ok"}', {"Content-Type": "application/json"})

    def token(self, seen: Seen) -> Reply:
        expected = base64.b64encode(f"loom-client:{CLIENT_SECRET}".encode()).decode()
        if seen.headers.get("authorization") != f"Basic {expected}":
            return Reply(401, b'{"error":"invalid_client"}', {"Content-Type": "application/json"})
        assert b"grant_type=client_credentials" in seen.body and b"scope=read" in seen.body
        with self.lock:
            token = f"access-{len(self.issued)}-{uuid.uuid4().hex}"
            self.issued.append(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


def oauth_services(server: LoopbackServer, secret: str = CLIENT_SECRET) -> FakeNodeServices:
    credential = OAuth2Client.model_validate(
        {
            "token_url": server.url("/token"),
            "client_id": "loom-client",
            "client_secret": secret,
            "scope": "read",
        }
    )
    return FakeNodeServices([server.where], {"oauth": credential})


def oauth_call(server: LoopbackServer, services: FakeNodeServices) -> dict[str, Any]:
    return execute({"url": server.url("/api"), "auth": {"credential_id": "oauth"}}, services)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The token cache's clock, moved by hand; the cache starts empty."""
    now = [1000.0]
    monkeypatch.setattr(http_request, "TOKENS", http_request.TokenCache(clock=lambda: now[0]))
    return now


def test_oauth2_token_is_fetched_once_and_cached(clock: list[float]) -> None:
    tokens = TokenServer()
    with serve(tokens) as server:
        services = oauth_services(server)
        for _ in range(4):
            assert oauth_call(server, services)["body"] == {"data": "ok"}
        assert len(tokens.issued) == 1
        assert [s.path for s in server.seen].count("/token") == 1
    LEAKS.assert_clean()
    for output_text in LEAKS.texts:
        assert tokens.issued[0] not in output_text


def test_oauth2_token_is_refreshed_shortly_before_it_expires(clock: list[float]) -> None:
    tokens = TokenServer(expires_in=600)
    with serve(tokens) as server:
        services = oauth_services(server)
        oauth_call(server, services)
        clock[0] += 500  # 100 s left: still fresh
        oauth_call(server, services)
        assert len(tokens.issued) == 1
        clock[0] += 50  # 50 s left, inside the 60 s margin: fetch a new one
        oauth_call(server, services)
        assert len(tokens.issued) == 2


def test_a_rejected_cached_token_is_refreshed_once(clock: list[float]) -> None:
    tokens = TokenServer()
    with serve(tokens) as server:
        services = oauth_services(server)
        oauth_call(server, services)
        tokens.revoked.add(tokens.issued[0])  # e.g. the provider rotated its keys
        assert oauth_call(server, services)["status"] == 200
        assert len(tokens.issued) == 2
        assert [s.path for s in server.seen] == ["/token", "/api", "/api", "/token", "/api"]


def test_a_fresh_token_that_is_refused_is_not_fetched_again(clock: list[float]) -> None:
    with serve(TokenServer(api_refuses_all=True)) as server:
        with pytest.raises(HttpStatusError, match="401"):
            oauth_call(server, oauth_services(server))
        assert [s.path for s in server.seen] == ["/token", "/api"]


def test_oauth2_client_rejected_by_the_token_endpoint(clock: list[float]) -> None:
    with serve(TokenServer()) as server, pytest.raises(OAuthTokenFailed) as failed:
        oauth_call(server, oauth_services(server, secret="wrong-secret-0123456789"))
    assert "answered 401 (invalid_client)" in failed.value.message
    assert not failed.value.retryable
    assert "wrong-secret" not in json.dumps(failed.value.to_dict())


def flaky(*replies: Reply) -> Any:
    """Answers the scripted replies in order, then 200."""
    script = list(replies)

    def answer(seen: Seen) -> Reply:
        return (
            script.pop(0)
            if script
            else Reply(200, b'{"ok":true}', {"Content-Type": "application/json"})
        )

    return answer


def test_429_is_retried_after_retry_after() -> None:
    with serve(flaky(Reply(429, b"slow down", {"Retry-After": "1"}))) as server:
        started = time.perf_counter()
        output = execute({"url": server.url("/")}, FakeNodeServices([server.where]))
        took = time.perf_counter() - started
    assert output["status"] == 200
    assert len(server.seen) == 2
    assert 1.0 <= took < 3


def test_500_is_retried_with_a_short_backoff() -> None:
    with serve(flaky(Reply(500, b"oops"))) as server:
        output = execute({"url": server.url("/")}, FakeNodeServices([server.where]))
    assert output["status"] == 200
    assert len(server.seen) == 2


def test_persistent_5xx_fails_after_three_attempts_and_is_retryable() -> None:
    with serve(flaky(*[Reply(503, b"down for maintenance")] * 5)) as server:
        with pytest.raises(HttpServerError) as failed:
            execute({"url": server.url("/x?token=abc")}, FakeNodeServices([server.where]))
        assert len(server.seen) == 3
    assert failed.value.retryable
    assert failed.value.details["status"] == 503
    assert "down for maintenance" in failed.value.message
    assert "token=abc" not in failed.value.message  # query strings stay out of errors


def test_retry_after_beyond_the_budget_is_not_waited_for() -> None:
    with serve(flaky(Reply(429, b"", {"Retry-After": "3600"}))) as server:
        started = time.perf_counter()
        with pytest.raises(HttpServerError, match="429"):
            execute({"url": server.url("/")}, FakeNodeServices([server.where]))
        assert time.perf_counter() - started < 1
        assert len(server.seen) == 1


def test_404_fails_with_the_status_unless_told_otherwise() -> None:
    def missing(seen: Seen) -> Reply:
        return Reply(404, b'{"error": "no such thing"}', {"Content-Type": "application/json"})

    with serve(missing) as server:
        services = FakeNodeServices([server.where])
        with pytest.raises(HttpStatusError) as failed:
            execute({"url": server.url("/things/9")}, services)
        output = execute({"url": server.url("/things/9"), "fail_on_status": False}, services)
        assert len(server.seen) == 2  # 4xx is not retried
    assert not failed.value.retryable
    assert failed.value.message.startswith(f"GET {server.url('/things/9')} answered 404")
    assert "no such thing" in failed.value.message
    assert output["status"] == 404 and output["body"] == {"error": "no such thing"}


def test_error_excerpts_are_redacted() -> None:
    """A server that puts the request's credentials into its error page."""

    def leaky(seen: Seen) -> Reply:
        return Reply(400, f"bad request with {seen.headers['authorization']}".encode())

    with serve(leaky) as server, pytest.raises(HttpStatusError) as failed:
        execute(
            {"url": server.url("/"), "auth": {"credential_id": "bearer"}},
            FakeNodeServices([server.where], CREDENTIALS),
        )
    assert "[redacted]" in failed.value.message
    LEAKS.assert_clean()


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nX-Injected: 1"}, {"X-Evil\nInjected": "1"}, {"Host": "elsewhere"}],
)
def test_header_injection_is_refused(echo: LoopbackServer, headers: dict[str, str]) -> None:
    with pytest.raises(InvalidOutboundRequest):
        execute({"url": echo.url("/"), "headers": headers}, FakeNodeServices([echo.where]))
    assert echo.seen == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://127.0.0.1/", "dict://x/"]
)
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(InvalidOutboundRequest, match="Only absolute http and https"):
        execute({"url": url}, FakeNodeServices(["127.0.0.1"]))


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:a9fe:a9fe]/", "cloud metadata"),
        ("http://0x7f.1:9/", "loopback"),
        ("http://10.0.0.1/", "private"),
    ],
)
def test_ssrf_targets_fail_with_a_clear_node_error(url: str, words: str) -> None:
    with pytest.raises(OutboundBlocked) as refused:
        execute({"url": url}, FakeNodeServices([]))
    error = refused.value.to_dict()
    assert error["code"] == "outbound_blocked"
    assert words in error["message"] and error["solution"]
    assert not refused.value.retryable


def test_not_allowlisted_loopback_server_is_refused(echo: LoopbackServer) -> None:
    with pytest.raises(OutboundBlocked, match="loopback"):
        execute({"url": echo.url("/")}, FakeNodeServices([]))
    with pytest.raises(OutboundBlocked):
        execute({"url": echo.url("/")}, None)
    assert echo.seen == []


def test_gigabyte_response_is_cut_at_the_cap_quickly_in_bounded_memory() -> None:
    chunk = bytes(64 * 1024)

    def zeros(seen: Seen) -> Reply:
        return Reply(200, (chunk for _ in range(16 * 1024)))  # 1 GB, streamed

    with serve(zeros) as server:
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with pytest.raises(OutboundTooLarge, match="1048576 byte limit"):
                execute(
                    {"url": server.url("/"), "max_response_bytes": MB},
                    FakeNodeServices([server.where]),
                )
            took = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert took < 5
    assert peak < 16 * MB


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"timeout_seconds": 301}, "less than or equal to 300"),
        ({"max_response_bytes": 100 * MB + 1}, "less than or equal to 104857600"),
        ({"method": "TRACE"}, "Input should be"),
        ({"response": "xml"}, "Input should be"),
        ({"body": {"type": "yaml", "value": "a: 1"}}, "does not match any of the expected tags"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_parameters_are_bounded(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        SPEC.parameters.model_validate({"url": "https://api.example/", **change})


def test_no_secret_ever_reached_an_output_or_an_error() -> None:
    """Runs last in this module: every output and error text collected above."""
    LEAKS.assert_clean()
