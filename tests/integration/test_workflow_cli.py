"""`loom validate` and `loom run` as a user meets them, good input and bad."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from loom.db import Database
from loom.engine.service import start_run
from loom.errors import InvalidInput
from loom.workflows.service import create_workflow
from tests.utils.engine import EXAMPLES, example
from tests.utils.pg import PgCluster
from tests.utils.procs import cli_env, run_cli


@pytest.fixture(scope="module")
def env(cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    owner = cluster.create_database(f"cli_{uuid.uuid4().hex[:8]}")
    home = tmp_path_factory.mktemp("home")
    return cli_env(home, DATABASE_URL=cluster.as_url(owner), LOOM_LOG_LEVEL="WARNING")


def _write(tmp_path: Path, definition: Any, name: str = "wf.json") -> str:
    path = tmp_path / name
    path.write_text(definition if isinstance(definition, str) else json.dumps(definition))
    return str(path)


def test_validate_accepts_every_example(env: dict[str, str]) -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        result = run_cli("validate", str(path), env=env)
        assert result.returncode == 0, (path, result.stderr)
        assert "valid" in result.stdout


def test_validate_lists_every_problem_with_its_path(env: dict[str, str], tmp_path: Path) -> None:
    broken = {
        "name": "broken",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {"id": "a", "type": "ACTION", "subtype": "NOPE"},
            {
                "id": "b",
                "type": "ACTION",
                "subtype": "TRANSFORM",
                "parameters": {"value": "{% ( %}"},
            },
        ],
        "edges": [{"from": "start", "to": "b"}, {"from": "b", "to": "ghost"}],
    }
    result = run_cli("validate", _write(tmp_path, broken), env=env)
    assert result.returncode == 1
    assert "nodes[1].subtype" in result.stderr
    assert "nodes[2].parameters.value" in result.stderr
    assert "edges[1].to" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_json_names_line_and_column(env: dict[str, str], tmp_path: Path) -> None:
    result = run_cli("validate", _write(tmp_path, '{"name": "x",\n  "nodes": [,]}'), env=env)
    assert result.returncode == 1
    assert "line 2" in result.stderr and "column" in result.stderr
    assert "Traceback" not in result.stderr


def test_ten_thousand_nodes_are_refused_clearly(env: dict[str, str], tmp_path: Path) -> None:
    nodes = [{"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}] + [
        {"id": f"n{i}", "type": "ACTION", "subtype": "TRANSFORM", "parameters": {"value": i}}
        for i in range(10_000)
    ]
    result = run_cli("validate", _write(tmp_path, {"name": "huge", "nodes": nodes}), env=env)
    assert result.returncode == 1
    message = result.stderr.replace(",", "")
    assert "10001 nodes" in message and "limit is 1000" in message


def test_run_prints_the_output_and_exits_zero(env: dict[str, str]) -> None:
    result = run_cli(
        "run", str(EXAMPLES / "if_skip.json"), "--input", '{"amount": 2}', "-q", env=env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"route": "auto-approved", "amount": 2}


def test_run_uses_the_sample_input_by_default(env: dict[str, str]) -> None:
    result = run_cli("run", str(EXAMPLES / "demo.json"), env=env)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert (output["tickets"], output["urgent"]) == (3, 2)
    assert output["escalations"][0] == {
        "ticket": 101,
        "message": "Escalating #101: Checkout returns 500",
    }
    assert "summary" in result.stderr, "live progress goes to stderr"


def test_the_ai_demo_runs_offline_on_the_local_model(env: dict[str, str]) -> None:
    """What `make run` shows second: an AI node on the tiny local model, no key, no network."""
    result = run_cli("run", str(EXAMPLES / "ai_triage.json"), "-q", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["notify"] in ("on-call engineer", "support queue")
    assert output["model"] == "local/smollm2-135m-instruct"
    assert output["message"].startswith(("Urgent ticket #104", "Ticket #104 queued as"))


def test_a_failing_run_exits_one_naming_the_node(env: dict[str, str], tmp_path: Path) -> None:
    definition = example("transform")
    definition["nodes"][1]["parameters"] = {"value": "{% $number($input.total) %}"}
    result = run_cli(
        "run", _write(tmp_path, definition), "--input", '{"total": "abc"}', "-q", env=env
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "node 'shape'" in lines[0], result.stderr
    assert result.stdout == ""


def test_bad_input_json_is_one_line(env: dict[str, str]) -> None:
    result = run_cli("run", str(EXAMPLES / "transform.json"), "--input", "{nope", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: --input is not JSON")


def test_a_10_mb_input_is_refused_and_nothing_is_stored(
    database: Database, workspace: uuid.UUID
) -> None:
    flow = create_workflow(database, workspace, example("transform")).workflow_id
    with pytest.raises(InvalidInput, match="limit is 5 MiB"):
        start_run(database, workspace, flow, {"blob": "x" * 10_000_000})
    with database.tenant(workspace) as conn:
        assert conn.execute("SELECT count(*) AS n FROM runs").fetchone() == {"n": 0}
