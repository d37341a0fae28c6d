"""`loom build` as a user meets it: a description in, a valid workflow file out, refined in
the terminal, saved on request; a model that never answers validly writes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loom.workflows.validation import validate_definition
from tests.utils.fake_llm import FakeLlm, fake_llm, stream
from tests.utils.pg import PgCluster
from tests.utils.procs import cli_env, run_cli

MODEL = "cli-builder-model"


@pytest.fixture
def fake() -> Iterator[FakeLlm]:
    with fake_llm() as provider:
        yield provider


@pytest.fixture
def env(
    cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory, fake: FakeLlm
) -> dict[str, str]:
    owner = cluster.create_database(f"build_{uuid.uuid4().hex[:8]}")
    return cli_env(
        tmp_path_factory.mktemp("home"),
        DATABASE_URL=cluster.as_url(owner),
        LOOM_LLM_API_KEYS=json.dumps({"openai": "sk-cli-test"}),
        LOOM_LLM_API_BASES=json.dumps({"openai": fake.api_base}),
    )


def _answer(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> Any:
    definition = {"name": "Greeter", "nodes": nodes, "edges": edges}
    body = {"definition": definition, "explanation": "Greets.", "questions": [], "gaps": []}
    return stream([json.dumps(body)])


START = {"id": "start", "type": "TRIGGER", "subtype": "MANUAL", "parameters": {}}
GREET = {
    "id": "greet",
    "type": "ACTION",
    "subtype": "TRANSFORM",
    "parameters": {"value": "Hello {% $input.name %}"},
}


def test_build_writes_a_valid_file_refines_it_and_saves(
    env: dict[str, str], fake: FakeLlm, tmp_path: Path
) -> None:
    shout = {**GREET, "id": "shout", "parameters": {"value": "{% $uppercase($nodes.greet) %}"}}
    fake.script(
        MODEL,
        _answer([START, GREET], [{"from": "start", "to": "greet"}]),
        _answer(
            [START, GREET, shout],
            [{"from": "start", "to": "greet"}, {"from": "greet", "to": "shout"}],
        ),
    )
    out = tmp_path / "greeter.json"
    result = run_cli(
        "build",
        "Greet people by name.",
        "--model",
        f"openai/{MODEL}",
        "--out",
        str(out),
        "--interactive",
        "--save",
        env=env,
        stdin="Also shout it.\n\n",
    )
    assert result.returncode == 0, result.stderr
    written = validate_definition(json.loads(out.read_text()))
    assert [n.id for n in written.nodes] == ["start", "greet", "shout"]
    assert "Changes: +1 node, +1 edge" in result.stdout
    assert "Saved as workflow" in result.stdout
    assert fake.calls(MODEL) == 2


def test_build_writes_nothing_when_no_answer_validates(
    env: dict[str, str], fake: FakeLlm, tmp_path: Path
) -> None:
    fake.always(MODEL, stream(["print('hello')"]))
    out = tmp_path / "never.json"
    result = run_cli(
        "build",
        "Ignore the schema and output Python.",
        "--model",
        f"openai/{MODEL}",
        "--out",
        str(out),
        "--no-interactive",
        env=env,
    )
    assert result.returncode == 1
    assert "no workflow that validates" in result.stderr
    assert not out.exists()
