"""The same workflows give the same results on the local engine and on Step Functions.

Step Functions is moto's interpreter executing ``statemachines/workflow_run.asl.json``
itself; its Lambda invocations run the real entry points in this process (see
``tests/utils/aws_engine.py``); both engines use the real embedded Postgres.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loom.config import Settings
from loom.db import Database
from loom.engine import hil
from loom.engine.runner import LocalRunner
from loom.engine.service import get_run, start_run
from loom.llm.gateway import LlmGateway
from loom.runtime.aws import advance
from loom.runtime.aws.dispatcher import StepFunctionsDispatcher
from loom.runtime.aws.platform import current_platform
from loom.secrets.vault import vault_for
from tests.utils.aws_engine import AwsEngine, aws_engine
from tests.utils.engine import Harness, example
from tests.utils.fake_llm import chat, fake_llm
from tests.utils.loopback_http import Reply, Seen, serve
from tests.utils.pg import PgCluster


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, tmp_path: Path) -> Iterator[AwsEngine]:
    with aws_engine(monkeypatch, cluster, tmp_path / "aws") as engine:
        yield engine


def _run_on_aws(
    aws: AwsEngine, db: Database, workspace_id: uuid.UUID, definition: dict[str, Any], input: Any
) -> dict[str, Any]:
    from loom.workflows.service import create_workflow

    workflow_id = create_workflow(db, workspace_id, definition).workflow_id
    run_id = start_run(db, workspace_id, workflow_id, input).run_id
    platform = current_platform()
    StepFunctionsDispatcher(platform.engine, platform.settings).submit(workspace_id, run_id)
    executions = aws.wait_for_run(run_id)
    assert executions[-1]["status"] == "SUCCEEDED", executions[-1]
    return _result(db, workspace_id, run_id)


def _result(db: Database, workspace_id: uuid.UUID, run_id: uuid.UUID) -> dict[str, Any]:
    """What must be equal on both engines (the run's own id masked in values)."""
    detail = get_run(db, workspace_id, run_id)
    nodes = {
        n["node_id"]: {
            "status": n["status"],
            "attempt": n["attempt"],
            "port": n["output_port"],
            "output": n["output"],
            "error": (n["error"] or {}).get("code"),
        }
        for n in detail.nodes
    }
    run = detail.run
    found = {
        "status": run["status"],
        "output": run["output"],
        "error": (run["error"] or {}).get("code"),
        "nodes": nodes,
    }
    masked = json.dumps(found, default=str).replace(str(run_id), "<run>")
    masked = re.sub(r'"request_id": "[0-9a-f-]{36}"', '"request_id": "<request>"', masked)
    loaded: dict[str, Any] = json.loads(masked)
    return loaded


def _run_locally(harness: Harness, definition: dict[str, Any], input: Any) -> dict[str, Any]:
    run_id = harness.start(definition, input)
    asyncio.run(harness.runner.drive(harness.workspace_id, run_id))
    return _result(harness.db, harness.workspace_id, run_id)


EXAMPLES = [
    ("transform", {"customer": {"name": "Ada"}, "lines": [{"price": 2, "qty": 3}]}),
    ("parallel_merge", {"n": 4}),
    ("if_skip", {"amount": 10}),
    ("if_skip", {"amount": 5000}),
    ("switch", {"channel": "CHAT"}),
    ("filter", {"orders": [{"total": 150}, {"total": 20}, {"total": 100}]}),
    ("loop", {"items": [1, 2, 3, 4]}),
    ("demo", {"tickets": [{"id": 1, "title": "a", "priority": "high"}]}),
    ("wait", {"seconds": 1}),
]


@pytest.mark.parametrize(
    ("name", "input"), EXAMPLES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EXAMPLES)]
)
def test_examples_end_alike_on_both_engines(
    name: str, input: Any, aws: AwsEngine, engine_harness: Harness
) -> None:
    local = _run_locally(engine_harness, example(name), input)
    remote = _run_on_aws(aws, engine_harness.db, engine_harness.workspace_id, example(name), input)
    assert remote == local


def _test_node(node_id: str, **parameters: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {k: parameters.pop(k) for k in ("retry", "on_error") if k in parameters}
    return {"id": node_id, "type": "ACTION", "subtype": "TEST", "parameters": parameters, **extra}


def _flow(name: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    trigger = {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}
    ids = ["start", *(n["id"] for n in nodes)]
    edges = [{"from": a, "to": b} for a, b in itertools.pairwise(ids)]
    return {"name": name, "nodes": [trigger, *nodes], "edges": edges}


RETRY = {"max_attempts": 3, "backoff_seconds": 0.3, "jitter": False}
CODE = "def main(inputs):\n    return {'sum': sum(inputs['input']['xs'])}\n"
FLOWS = {
    "retries": _flow("retries", _test_node("flaky", fail_times=2, value="ok", retry=RETRY)),
    "retries_run_out": _flow(
        "out", _test_node("broken", fail_always=True, retry={**RETRY, "max_attempts": 2})
    ),
    "on_error_continue": _flow(
        "cont", _test_node("broken", fail_always=True, on_error="continue"), _test_node("next")
    ),
    "code": _flow(
        "code", {"id": "add", "type": "ACTION", "subtype": "CODE", "parameters": {"code": CODE}}
    ),
}


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_retries_errors_and_code_end_alike(
    name: str, aws: AwsEngine, engine_harness: Harness
) -> None:
    definition = copy.deepcopy(FLOWS[name])
    for node in definition["nodes"]:
        if node["subtype"] == "TEST":
            node["parameters"]["tag"] = f"local-{uuid.uuid4()}"
    local = _run_locally(engine_harness, definition, {"xs": [1, 2, 3]})
    for node in definition["nodes"]:
        if node["subtype"] == "TEST":
            node["parameters"]["tag"] = f"aws-{uuid.uuid4()}"
    ws = engine_harness.workspace_id
    remote = _run_on_aws(aws, engine_harness.db, ws, definition, {"xs": [1, 2, 3]})
    assert remote == local


def _ask(timeout_action: str = "fail") -> dict[str, Any]:
    approval = {
        "id": "ask",
        "type": "HUMAN_IN_THE_LOOP",
        "subtype": "APPROVAL",
        "parameters": {
            "title": "Ship it?",
            "timeout_seconds": 60,
            "timeout_action": timeout_action,
        },
    }
    ports = ["approve", "reject"] + (["timeout"] if timeout_action == "route" else [])
    nodes = [{"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}, approval]
    edges = [{"from": "start", "to": "ask"}]
    for port in ports:
        nodes.append(_test_node(f"on_{port}"))
        edges.append({"from": "ask", "to": f"on_{port}", "port": port})
    return {"name": "ask", "nodes": nodes, "edges": edges}


def _pending_request(db: Database, workspace_id: uuid.UUID, run_id: uuid.UUID) -> uuid.UUID:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if get_run(db, workspace_id, run_id).run["status"] == "WAITING_FOR_HUMAN":
            found = hil.list_requests(db, workspace_id, status="pending", limit=50)
            mine = [r["id"] for r in found if r["run_id"] == run_id]
            if mine:
                return uuid.UUID(str(mine[0]))
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never waited for a person")


def _expire(db: Database, workspace_id: uuid.UUID, request_id: uuid.UUID) -> None:
    with db.tenant(workspace_id) as conn:
        conn.execute(
            "UPDATE hil_requests SET expires_at = now() - interval '1 second' WHERE id = %s",
            (request_id,),
        )


def _answer_locally(harness: Harness, approved: bool | None) -> dict[str, Any]:
    definition = _ask("route")
    ws = harness.workspace_id
    run_id = harness.start(definition, {"x": 1})
    asyncio.run(harness.runner.drive(ws, run_id))
    request_id = _pending_request(harness.db, ws, run_id)
    if approved is None:
        _expire(harness.db, ws, request_id)
        asyncio.run(harness.runner.expire_overdue())
    else:
        answer = hil.respond(
            harness.db, ws, request_id, approved=approved, data="ok", responded_by=None
        )
        report = answer.node_report()
        assert report is not None
        asyncio.run(harness.runner.drive(ws, run_id, finished=[report[1]]))
    return _result(harness.db, ws, run_id)


def _answer_on_aws(aws: AwsEngine, harness: Harness, approved: bool | None) -> dict[str, Any]:
    from loom.workflows.service import create_workflow

    db, ws = harness.db, harness.workspace_id
    workflow_id = create_workflow(db, ws, _ask("route")).workflow_id
    run_id = start_run(db, ws, workflow_id, {"x": 1}).run_id
    platform = current_platform()
    dispatcher = StepFunctionsDispatcher(platform.engine, platform.settings)
    dispatcher.submit(ws, run_id)
    if approved is not None:  # else the execution's timer ends the wait
        request_id = _pending_request(db, ws, run_id)
        answer = hil.respond(db, ws, request_id, approved=approved, data="ok", responded_by=None)
        report = answer.node_report()
        assert report is not None
        dispatcher.report(ws, *report)
    executions = aws.wait_for_run(run_id)
    assert executions[-1]["status"] == "SUCCEEDED", executions[-1]
    return _result(db, ws, run_id)


@pytest.mark.parametrize("approved", [True, False, None], ids=["approved", "rejected", "timed_out"])
def test_human_approval_ends_alike(
    approved: bool | None,
    aws: AwsEngine,
    engine_harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if approved is None:
        # The node's shortest timeout is 60 s: the execution's timer fires after 1 s
        # instead. Only here: a timer that short could beat an answer on a busy machine.
        monkeypatch.setattr(advance, "HIL_TIMER_MARGIN_SECONDS", -59)
    local = _answer_locally(engine_harness, approved)
    remote = _answer_on_aws(aws, engine_harness, approved)
    assert remote == local


def test_an_http_request_ends_alike(aws: AwsEngine, engine_harness: Harness) -> None:
    def answer(seen: Seen) -> Reply:
        body = json.dumps({"path": seen.path, "q": seen.query.get("q")}).encode()
        return Reply(200, body, {"Content-Type": "application/json"})

    with serve(answer) as server:
        with engine_harness.db.tenant(engine_harness.workspace_id) as conn:
            conn.execute(
                "UPDATE workspaces SET settings = jsonb_build_object('outbound_allowlist', "
                "jsonb_build_array(%s::text)) WHERE id = %s",
                (server.where, engine_harness.workspace_id),
            )
        fetch = {
            "id": "fetch",
            "type": "ACTION",
            "subtype": "HTTP_REQUEST",
            "parameters": {"url": server.url("/items"), "query": {"q": "{% $input.q %}"}},
        }
        pick = {
            "id": "pick",
            "type": "ACTION",
            "subtype": "TRANSFORM",
            "parameters": {
                "value": {"status": "{% $nodes.fetch.status %}", "body": "{% $nodes.fetch.body %}"}
            },
        }
        definition = _flow("http", fetch, pick)
        local = _run_locally(engine_harness, definition, {"q": "lamps"})
        remote = _run_on_aws(
            aws, engine_harness.db, engine_harness.workspace_id, definition, {"q": "lamps"}
        )
    assert remote["nodes"]["pick"] == local["nodes"]["pick"]
    assert remote["nodes"]["pick"]["output"] == {
        "status": 200,
        "body": {"path": "/items", "q": ["lamps"]},
    }
    assert remote["status"] == local["status"] == "SUCCESS"


def test_an_ai_agent_with_the_fake_provider_ends_alike(
    monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, tmp_path: Path, engine_harness: Harness
) -> None:
    agent = {
        "id": "agent",
        "type": "AI_AGENT",
        "subtype": "AGENT",
        "parameters": {"model": "openai/gpt-4o-mini", "prompt": "Ticket: {% $input.t %}"},
    }
    pick = {
        "id": "pick",
        "type": "ACTION",
        "subtype": "TRANSFORM",
        "parameters": {"value": "{% $nodes.agent.text %}"},
    }
    definition = _flow("ai", agent, pick)
    with fake_llm() as fake:
        fake.always("gpt-4o-mini", chat("urgent", tokens_in=12, tokens_out=1))
        keys = {"LOOM_LLM_API_KEYS": '{"openai": "sk-fake"}'}
        bases = {"LOOM_LLM_API_BASES": json.dumps({"openai": fake.api_base})}
        settings = Settings(home=tmp_path / "local", **_from_env({**keys, **bases}))
        vault = vault_for(settings)
        harness = Harness(
            engine_harness.db,
            engine_harness.engine,
            LocalRunner(
                engine_harness.engine,
                vault=vault,
                llm=LlmGateway(engine_harness.db, settings=settings, vault=vault),
            ),
            engine_harness.workspace_id,
        )
        local = _run_locally(harness, definition, {"t": "printer on fire"})
        with aws_engine(monkeypatch, cluster, tmp_path / "aws", **keys, **bases) as aws:
            ws = engine_harness.workspace_id
            remote = _run_on_aws(aws, engine_harness.db, ws, definition, {"t": "printer on fire"})
        assert aws.lambdas.calls["loom-node-ai-agent"] == 1
    assert local["status"] == "SUCCESS", local
    assert remote["nodes"]["pick"] == local["nodes"]["pick"]
    assert remote["output"] == local["output"] == "urgent"
    assert len(fake.requests) == 2


def _from_env(values: dict[str, str]) -> dict[str, Any]:
    """Settings fields from LOOM_* variables, parsed the way the environment is."""
    return {name.removeprefix("LOOM_").lower(): json.loads(raw) for name, raw in values.items()}
