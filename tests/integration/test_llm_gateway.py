"""The LLM gateway against a scripted provider on loopback, through litellm, with the real
database: retries, fallbacks, the breaker, budgets, rate limits, deadlines and usage."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from loom.config import Settings
from loom.db import Database
from loom.errors import LoomError
from loom.llm._litellm import litellm
from loom.llm.calls import CallContext, Completion, StreamEnd, StreamEvent, TextDelta, ToolCallDelta
from loom.llm.errors import LlmError
from loom.llm.gateway import LlmGateway
from loom.secrets.keyring import LocalKeyring
from loom.secrets.service import create_credential
from loom.secrets.types import CredentialType
from loom.secrets.vault import Vault
from tests.utils.api import test_settings
from tests.utils.engine import Harness, example
from tests.utils.fake_llm import (
    FakeLlm,
    auth_error,
    chat,
    context_length_error,
    embeddings,
    fake_llm,
    hang,
    malformed,
    quota_exceeded,
    rate_limited,
    server_error,
    stream,
    stream_then_hang,
)

MINI, MINI_REMOTE = "openai/gpt-4o-mini", "gpt-4o-mini"
BIG, BIG_REMOTE = "openai/gpt-4o", "gpt-4o"
HELLO = [{"role": "user", "content": "Say hello."}]
# gpt-4o-mini in litellm's bundled price map: USD per token in and out.
PRICE_IN, PRICE_OUT = 0.15 / 1e6, 0.6 / 1e6


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A gateway over the fake provider whose sleeps are recorded, not waited."""

    def __init__(
        self, database: Database, fake: FakeLlm, settings: Settings, clock: Clock | None = None
    ) -> None:
        self.fake = fake
        self.sleeps: list[float] = []
        self.gateway = LlmGateway(
            database,
            settings=settings,
            vault=VAULT,
            clock=clock or time.monotonic,
            sleep=self._sleep,
            jitter=lambda: 0.5,
        )

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def complete(self, workspace: uuid.UUID, **kwargs: Any) -> Completion:
        kwargs.setdefault("model", MINI)
        kwargs.setdefault("messages", HELLO)
        call = kwargs.pop("call", None) or CallContext(workspace_id=workspace)
        return asyncio.run(self.gateway.complete(call, **kwargs))

    def fails(self, workspace: uuid.UUID, **kwargs: Any) -> LlmError:
        with pytest.raises(LlmError) as caught:
            self.complete(workspace, **kwargs)
        return caught.value

    def refused(self, workspace: uuid.UUID, **kwargs: Any) -> LoomError:
        with pytest.raises(LoomError) as caught:
            self.complete(workspace, **kwargs)
        return caught.value


VAULT = Vault(LocalKeyring(b"k" * 32))


@pytest.fixture(scope="module", autouse=True)
def _warm_litellm() -> None:
    """litellm imports more on its first request (seconds on a busy machine); make it
    before the tests whose deadlines are short."""
    with fake_llm() as server:
        server.always(MINI_REMOTE, chat())
        asyncio.run(
            litellm().acompletion(
                model=MINI, messages=HELLO, api_key="k", api_base=server.api_base, max_retries=0
            )
        )


def _settings(tmp_path: Path, fake: FakeLlm, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "llm_api_keys": {"openai": "sk-platform"},
        "llm_api_bases": {"openai": fake.api_base},
        "llm_workspace_calls_per_minute": 100_000,
        "llm_provider_calls_per_minute": 100_000,
        **overrides,
    }
    return test_settings(tmp_path, **values)


@pytest.fixture
def rig(database: Database, fake: FakeLlm, tmp_path: Path) -> Rig:
    return Rig(database, fake, _settings(tmp_path, fake))


def _usage(database: Database, workspace: uuid.UUID) -> list[dict[str, Any]]:
    with database.tenant(workspace) as conn:
        return conn.execute(
            "SELECT model, provider, status, tokens_in, tokens_out, cost_usd, latency_ms, run_id "
            "FROM llm_usage ORDER BY created_at, status DESC"
        ).fetchall()


def _month_spend(database: Database, workspace: uuid.UUID) -> Decimal:
    with database.tenant(workspace) as conn:
        row = conn.execute("SELECT cost_usd FROM llm_spend").fetchone()
    return row["cost_usd"] if row else Decimal(0)


def _set_budget(database: Database, workspace: uuid.UUID, budget: dict[str, Any]) -> None:
    with database.tenant(workspace) as conn:
        conn.execute(
            "UPDATE workspaces SET settings = jsonb_set(settings, '{llm_budget}', %s)",
            (Jsonb(budget),),
        )


# -- answers, usage and cost ---------------------------------------------------------------


def test_a_completion_records_tokens_cost_and_latency(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    rig.fake.script(MINI_REMOTE, chat("Hello!", tokens_in=100, tokens_out=20))
    answer = rig.complete(workspace, temperature=0.2, max_tokens=50)

    cost = 100 * PRICE_IN + 20 * PRICE_OUT
    assert (answer.text, answer.model, answer.finish_reason) == ("Hello!", MINI, "stop")
    assert (answer.tokens_in, answer.tokens_out) == (100, 20)
    assert answer.cost_usd == pytest.approx(cost)
    assert answer.warnings == []
    sent = rig.fake.requests[0]
    assert sent.headers["authorization"] == "Bearer sk-platform"
    assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] == 50
    [row] = _usage(database, workspace)
    assert row["model"] == MINI and row["provider"] == "openai" and row["status"] == "ok"
    assert (row["tokens_in"], row["tokens_out"]) == (100, 20)
    assert float(row["cost_usd"]) == pytest.approx(cost)
    assert float(_month_spend(database, workspace)) == pytest.approx(cost)


def test_tool_calls_come_back_parsed(rig: Rig, workspace: uuid.UUID) -> None:
    rig.fake.script(
        MINI_REMOTE, chat(None, tool_calls=[("lookup", {"id": 7}), ("search", {"q": "x"})])
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": name,
                "parameters": {"type": "object", "properties": {}},
            },
        }
        for name in ("lookup", "search")
    ]
    answer = rig.complete(workspace, tools=tools)
    assert answer.finish_reason == "tool_calls" and answer.text == ""
    assert [(c.name, c.arguments) for c in answer.tool_calls] == [
        ("lookup", {"id": 7}),
        ("search", {"q": "x"}),
    ]
    assert [t["function"]["name"] for t in rig.fake.requests[0].body["tools"]] == [
        "lookup",
        "search",
    ]


def test_streaming_yields_deltas_then_the_usage(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    rig.fake.script(
        MINI_REMOTE,
        stream(["Hel", "lo"], tool_call=("lookup", '{"id": 7}'), tokens_in=30, tokens_out=9),
    )

    async def collect() -> list[StreamEvent]:
        call = CallContext(workspace_id=workspace)
        return [event async for event in rig.gateway.stream(call, model=MINI, messages=HELLO)]

    events = asyncio.run(collect())
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo"]
    pieces = [e for e in events if isinstance(e, ToolCallDelta)]
    assert pieces[0].name == "lookup" and pieces[0].id == "call_0"
    assert "".join(p.arguments for p in pieces) == '{"id": 7}'
    end = events[-1]
    assert isinstance(end, StreamEnd)
    assert end.completion.text == "Hello"
    assert [(c.name, c.arguments) for c in end.completion.tool_calls] == [("lookup", {"id": 7})]
    assert (end.completion.tokens_in, end.completion.tokens_out) == (30, 9)
    assert end.completion.cost_usd == pytest.approx(30 * PRICE_IN + 9 * PRICE_OUT)
    assert rig.fake.requests[0].body["stream"] is True
    [row] = _usage(database, workspace)
    assert (row["status"], row["tokens_in"], row["tokens_out"]) == ("ok", 30, 9)


def test_a_stream_that_stalls_ends_at_the_deadline_with_its_partial_usage(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    rig.fake.script(MINI_REMOTE, stream_then_hang(rig.fake, ["Once", " upon", " a time"]))
    call = CallContext(workspace_id=workspace, deadline_seconds=1.0)
    texts: list[str] = []

    async def consume() -> None:
        async for event in rig.gateway.stream(call, model=MINI, messages=HELLO):
            if isinstance(event, TextDelta):
                texts.append(event.text)

    started = time.monotonic()
    with pytest.raises(LlmError) as caught:
        asyncio.run(consume())
    assert time.monotonic() - started < 5
    assert caught.value.code == "llm_timeout"
    assert texts == ["Once", " upon", " a time"]
    [row] = _usage(database, workspace)
    assert row["status"] == "llm_timeout" and row["tokens_in"] > 0 and row["tokens_out"] >= 3
    assert float(row["cost_usd"]) > 0


def test_a_stream_dropped_by_its_reader_is_still_recorded(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    rig.fake.script(MINI_REMOTE, stream(["a", "b", "c", "d"]))

    async def first_delta() -> str:
        events = rig.gateway.stream(CallContext(workspace_id=workspace), model=MINI, messages=HELLO)
        async for event in events:
            if isinstance(event, TextDelta):
                await events.aclose()
                return event.text
        raise AssertionError("no text")

    assert asyncio.run(first_delta()) == "a"
    [row] = _usage(database, workspace)
    assert row["status"] == "cancelled" and row["tokens_out"] == 1


def test_embeddings_in_input_order_with_their_usage(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    rig.fake.script("text-embedding-3-small", embeddings(dimensions=4, tokens_per_input=5))
    call = CallContext(workspace_id=workspace)
    vectors = asyncio.run(
        rig.gateway.embed(call, model="openai/text-embedding-3-small", inputs=["a", "b", "c"])
    )
    assert vectors == [[0.5] * 4, [1.5] * 4, [2.5] * 4]
    [row] = _usage(database, workspace)
    assert (row["status"], row["tokens_in"], row["tokens_out"]) == ("ok", 15, 0)
    assert float(row["cost_usd"]) == pytest.approx(15 * 0.02 / 1e6)


# -- retries and fallbacks ------------------------------------------------------------------


def test_a_server_error_is_retried_then_the_fallback_answers(
    database: Database, fake: FakeLlm, workspace: uuid.UUID, tmp_path: Path
) -> None:
    rig = Rig(database, fake, _settings(tmp_path, fake, llm_max_attempts=2))
    fake.always(MINI_REMOTE, server_error(500))
    fake.script(BIG_REMOTE, chat("from the fallback"))
    answer = rig.complete(workspace, fallbacks=[BIG])

    assert answer.text == "from the fallback" and answer.model == BIG
    assert (fake.calls(MINI_REMOTE), fake.calls(BIG_REMOTE)) == (2, 1)
    assert rig.sleeps == [pytest.approx(0.375)]  # 0.5 s step, jitter 0.5: 0.25 + 0.125
    statuses = [(r["model"], r["status"]) for r in _usage(database, workspace)]
    assert sorted(statuses) == [(BIG, "ok"), (MINI, "llm_server"), (MINI, "llm_server")]


def test_retries_wait_for_retry_after(rig: Rig, workspace: uuid.UUID) -> None:
    rig.fake.script(MINI_REMOTE, rate_limited(retry_after=7), chat("at last"))
    assert rig.complete(workspace).text == "at last"
    assert rig.sleeps == [7.0]
    assert rig.fake.calls() == 2


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(
    rig: Rig, workspace: uuid.UUID
) -> None:
    rig.fake.script(MINI_REMOTE, rate_limited(retry_after=120))
    error = rig.fails(workspace, call=CallContext(workspace_id=workspace, deadline_seconds=10))
    assert error.code == "llm_rate_limit" and error.retry_after == 120
    assert rig.sleeps == [] and rig.fake.calls() == 1


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (auth_error, "llm_auth"),
        (context_length_error, "llm_context_length"),
        (quota_exceeded, "llm_quota_exceeded"),
    ],
)
def test_auth_context_and_quota_errors_are_not_retried(
    rig: Rig, database: Database, workspace: uuid.UUID, reply: Any, code: str
) -> None:
    rig.fake.always(MINI_REMOTE, reply())
    error = rig.fails(workspace)
    assert error.code == code and not error.retryable
    assert rig.fake.calls() == 1 and rig.sleeps == []
    assert [r["status"] for r in _usage(database, workspace)] == [code]


def test_an_auth_failure_names_the_key_and_never_quotes_it(rig: Rig, workspace: uuid.UUID) -> None:
    rig.fake.always(MINI_REMOTE, auth_error())
    error = rig.fails(workspace)
    assert "LOOM_LLM_API_KEYS" in error.solution
    assert "sk-" not in error.message + error.solution


# -- the circuit breaker ---------------------------------------------------------------------


def test_the_breaker_opens_rests_without_calls_and_recovers_through_a_probe(
    database: Database, fake: FakeLlm, workspace: uuid.UUID, tmp_path: Path
) -> None:
    clock = Clock()
    settings = _settings(
        tmp_path, fake, llm_max_attempts=1, llm_breaker_failures=3, llm_breaker_reset_seconds=30
    )
    rig = Rig(database, fake, settings, clock)
    fake.always(MINI_REMOTE, server_error(503))
    for _ in range(3):
        assert rig.fails(workspace).code == "llm_server"
    assert fake.calls(MINI_REMOTE) == 3

    # Open: no request reaches the model, and a fallback answers meanwhile.
    opened = rig.fails(workspace)
    assert opened.code == "llm_circuit_open" and opened.retry_after == 30
    fake.script(BIG_REMOTE, chat("fallback"))
    assert rig.complete(workspace, fallbacks=[BIG]).model == BIG
    assert fake.calls(MINI_REMOTE) == 3

    # Half-open: one probe; it fails, so the circuit rests again.
    clock.now += 30
    assert rig.fails(workspace).code == "llm_server"
    assert fake.calls(MINI_REMOTE) == 4
    assert rig.fails(workspace).code == "llm_circuit_open"
    assert fake.calls(MINI_REMOTE) == 4

    # The next probe succeeds and closes it.
    clock.now += 30
    fake.script(MINI_REMOTE, chat("back"), chat("still here"))
    assert rig.complete(workspace).text == "back"
    assert rig.complete(workspace).text == "still here"
    assert fake.calls(MINI_REMOTE) == 6


# -- budgets ---------------------------------------------------------------------------------


def test_the_monthly_budget_stops_a_call_before_it_is_made(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    _set_budget(database, workspace, {"monthly_usd": 0.0001})
    rig.fake.always(MINI_REMOTE, chat("never sent"))
    error = rig.fails(workspace, max_tokens=1000)  # up to 1000 * 0.6e-6 = $0.0006
    assert error.code == "llm_budget_exceeded" and not error.retryable
    assert "monthly model budget is $0.00010;" in error.message
    assert "llm_budget.monthly_usd" in error.solution
    assert rig.fake.calls() == 0 and _usage(database, workspace) == []
    assert rig.complete(workspace, max_tokens=100).text == "never sent"  # $0.00006 fits


def test_a_warning_when_a_call_crosses_the_threshold(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    cost = 10 * PRICE_IN + 5 * PRICE_OUT  # 4.5e-6
    _set_budget(database, workspace, {"monthly_usd": 5e-6, "warn_percent": 80})
    rig.fake.script(MINI_REMOTE, chat("ok"))
    answer = rig.complete(workspace, max_tokens=1)
    assert answer.cost_usd == pytest.approx(cost)
    [warning] = answer.warnings
    assert "monthly model budget is 90% spent" in warning


def test_the_run_budget_counts_the_runs_calls(
    rig: Rig, database: Database, workspace: uuid.UUID, engine_harness: Harness
) -> None:
    run_id = engine_harness.start(example("transform"), {})
    call = CallContext(workspace_id=workspace, run_id=run_id, run_budget_usd=0.000045)
    rig.fake.always(MINI_REMOTE, chat("ok", tokens_in=100, tokens_out=40))  # $0.000039
    first = rig.complete(workspace, call=call, max_tokens=40)
    [warning] = first.warnings
    assert "run's model budget is 87% spent" in warning
    error = rig.fails(workspace, call=call, max_tokens=40)
    assert error.code == "llm_budget_exceeded" and error.details["budget"] == "run"
    assert rig.fake.calls() == 1
    assert [r["run_id"] for r in _usage(database, workspace)] == [run_id]


# -- rate limits -----------------------------------------------------------------------------


def test_the_workspace_bucket_is_shared_by_two_gateways(
    database: Database, fake: FakeLlm, workspace: uuid.UUID, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, fake, llm_workspace_calls_per_minute=2)
    now = [time.time()]
    first, second = (
        LlmGateway(database, settings=settings, bucket_clock=lambda: now[0]) for _ in range(2)
    )
    fake.always(MINI_REMOTE, chat("ok"))
    call = CallContext(workspace_id=workspace)

    async def ask(gateway: LlmGateway) -> Completion:
        return await gateway.complete(call, model=MINI, messages=HELLO)

    asyncio.run(ask(first))
    asyncio.run(ask(second))
    with pytest.raises(LlmError) as caught:
        asyncio.run(ask(first))
    assert caught.value.code == "llm_rate_limit"
    assert caught.value.retry_after == pytest.approx(30, abs=0.5)
    assert fake.calls() == 2

    now[0] += 30  # one token back: 2 a minute
    asyncio.run(ask(second))
    assert fake.calls() == 3


def test_the_platform_key_bucket_spans_workspaces(
    database: Database, fake: FakeLlm, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, fake, llm_provider_calls_per_minute=1)
    gateway = LlmGateway(database, settings=settings)
    fake.always(MINI_REMOTE, chat("ok"))
    spaces = []
    for _ in range(2):
        space = uuid.uuid4()
        with database.tenant(space) as conn:
            conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'llm')", (space,))
        spaces.append(space)

    _forget_platform_bucket(database)  # other tests drew on it at a higher rate
    try:
        asyncio.run(gateway.complete(CallContext(spaces[0]), model=MINI, messages=HELLO))
        with pytest.raises(LlmError) as caught:
            asyncio.run(gateway.complete(CallContext(spaces[1]), model=MINI, messages=HELLO))
    finally:
        _forget_platform_bucket(database)
    assert caught.value.code == "llm_rate_limit" and "platform key" in caught.value.message
    assert caught.value.retry_after == pytest.approx(60, abs=1)
    assert fake.calls() == 1


def _forget_platform_bucket(database: Database) -> None:
    with database.system() as conn:
        conn.execute("DELETE FROM llm_platform_buckets WHERE key = 'provider:openai'")


# -- deadlines, garbage, keys ----------------------------------------------------------------


def test_a_hanging_provider_ends_at_the_deadline(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    rig.fake.always(MINI_REMOTE, hang(30))
    rig.fake.always(BIG_REMOTE, chat("too late"))
    started = time.monotonic()
    call = CallContext(workspace_id=workspace, deadline_seconds=0.5)
    error = rig.fails(workspace, call=call, fallbacks=[BIG])
    assert time.monotonic() - started < 3
    assert error.code == "llm_timeout" and "deadline of 0.5 s" in error.message
    assert rig.fake.calls(BIG_REMOTE) == 0  # no time was left for the fallback
    assert [r["status"] for r in _usage(database, workspace)] == ["llm_timeout"]


def test_garbage_from_the_provider_is_a_clear_error_and_still_recorded(
    database: Database, fake: FakeLlm, workspace: uuid.UUID, tmp_path: Path
) -> None:
    rig = Rig(database, fake, _settings(tmp_path, fake, llm_max_attempts=2))
    fake.always(MINI_REMOTE, malformed())
    error = rig.fails(workspace)
    assert error.code == "llm_server" and error.retryable
    assert MINI in error.message and error.solution
    assert [r["status"] for r in _usage(database, workspace)] == ["llm_server", "llm_server"]


def test_a_missing_key_names_what_to_add(
    database: Database, fake: FakeLlm, workspace: uuid.UUID, tmp_path: Path
) -> None:
    rig = Rig(database, fake, _settings(tmp_path, fake, llm_api_keys={}))
    error = rig.fails(workspace)
    assert error.code == "llm_key_missing"
    assert "llm_api_key" in error.solution and "LOOM_LLM_API_KEYS" in error.solution
    assert fake.calls() == 0


@pytest.mark.parametrize("model", ["gpt-4o-mini", "madeup/model-x"])
def test_an_unknown_model_fails_before_any_call(rig: Rig, workspace: uuid.UUID, model: str) -> None:
    error = rig.fails(workspace, model=model)
    assert error.code == "llm_model_unknown" and "provider" in error.message
    assert rig.fake.calls() == 0


def test_a_workspace_key_is_used_and_its_api_base_must_be_allowlisted(
    database: Database, fake: FakeLlm, workspace: uuid.UUID, tmp_path: Path
) -> None:
    rig = Rig(database, fake, _settings(tmp_path, fake, llm_api_keys={}))
    create_credential(
        database,
        VAULT,
        workspace_id=workspace,
        name="our-openai",
        credential_type=CredentialType.LLM_API_KEY,
        data={"provider": "openai", "api_key": "sk-ours", "api_base": fake.api_base},
    )
    refused = rig.refused(workspace)
    assert refused.code == "outbound_blocked" and "127.0.0.1" in refused.message
    assert fake.calls() == 0

    with database.tenant(workspace) as conn:
        conn.execute(
            "UPDATE workspaces SET settings = jsonb_set(settings, '{outbound_allowlist}', %s)",
            (Jsonb([f"127.0.0.1:{fake.port}"]),),
        )
    rig = Rig(database, fake, _settings(tmp_path, fake, llm_api_keys={}))
    fake.script(MINI_REMOTE, chat("with our key"))
    assert rig.complete(workspace).text == "with our key"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-ours"


# -- the local model seam --------------------------------------------------------------------


def test_local_models_are_reached_through_their_endpoint(
    rig: Rig, database: Database, workspace: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loom.llm import local

    async def endpoint(model: str) -> local.LocalEndpoint:
        assert model == "local/smollm2-135m-instruct"
        return local.LocalEndpoint(
            api_base=rig.fake.api_base,
            litellm_model="openai/smollm2-135m-instruct",
            api_key="local-secret",
            notice="A tiny local model answered.",
            supports_tools=False,
        )

    monkeypatch.setattr(local, "local_endpoint", endpoint)
    rig.fake.script("smollm2-135m-instruct", chat("hi from 135M parameters"))
    answer = rig.complete(workspace, model="local/smollm2-135m-instruct")
    assert answer.text == "hi from 135M parameters"
    assert answer.notice == "A tiny local model answered." and answer.cost_usd == 0
    assert rig.fake.requests[0].headers["authorization"] == "Bearer local-secret"
    [row] = _usage(database, workspace)
    assert (row["provider"], row["model"]) == ("local", "local/smollm2-135m-instruct")


def test_an_unknown_local_model_is_a_clear_model_error(rig: Rig, workspace: uuid.UUID) -> None:
    error = rig.fails(workspace, model="local/no-such-model")
    assert error.code == "llm_model_unknown" and "local/smollm2-135m-instruct" in error.message
    assert rig.fake.calls() == 0


def test_local_embeddings_go_through_the_custom_provider(
    rig: Rig, database: Database, workspace: uuid.UUID
) -> None:
    call = CallContext(workspace_id=workspace)
    vectors = asyncio.run(
        rig.gateway.embed(call, model="local/all-minilm-l6-v2", inputs=["printer on fire", "ok"])
    )
    assert len(vectors) == 2 and len(vectors[0]) == 384 and vectors[0] != vectors[1]
    [row] = _usage(database, workspace)
    assert (row["provider"], row["status"], float(row["cost_usd"])) == ("local", "ok", 0.0)
    assert row["tokens_in"] > 0
