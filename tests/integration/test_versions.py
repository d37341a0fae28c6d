"""Every save is an immutable version; runs pin theirs; versions diff structurally."""

from __future__ import annotations

import copy
import uuid

import psycopg
import pytest

from loom.db import Database
from loom.engine.service import get_run, start_run
from loom.errors import NotFound, ValidationFailed
from loom.workflows.service import create_workflow, diff_versions, publish, save_version
from tests.utils.engine import example


def test_versions_are_immutable_and_runs_pin_theirs(
    database: Database, workspace: uuid.UUID
) -> None:
    first = example("transform")
    created = create_workflow(database, workspace, first)
    second = copy.deepcopy(first)
    second["nodes"][1]["parameters"]["value"]["customer"] = "{% $input.customer.name %}"
    saved = save_version(database, workspace, created.workflow_id, second, publish=False)
    assert (created.version, saved.version) == (1, 2)
    run = start_run(database, workspace, created.workflow_id, {"customer": {"name": "a"}})
    assert get_run(database, workspace, run.run_id).run["workflow_version"] == 1, "live is 1"
    publish(database, workspace, created.workflow_id, 2)
    later = start_run(database, workspace, created.workflow_id, {})
    assert get_run(database, workspace, later.run_id).run["workflow_version"] == 2
    with (
        pytest.raises(psycopg.errors.IntegrityConstraintViolation),
        database.tenant(workspace) as c,
    ):
        c.execute("DELETE FROM workflow_versions WHERE workflow_id = %s", (created.workflow_id,))


def test_diff_between_versions(database: Database, workspace: uuid.UUID) -> None:
    first = example("if_skip")
    created = create_workflow(database, workspace, first)
    second = copy.deepcopy(first)
    second["nodes"][1]["parameters"]["condition"] = "{% $input.amount > 5000 %}"
    second["nodes"].append(
        {"id": "audit", "type": "ACTION", "subtype": "TRANSFORM", "parameters": {"value": "logged"}}
    )
    second["edges"].append({"from": "approve", "to": "audit"})
    save_version(database, workspace, created.workflow_id, second)
    diff = diff_versions(database, workspace, created.workflow_id, 1, 2)
    assert diff.nodes_added == ["audit"]
    assert [c.path for c in diff.nodes_changed["big"]] == ["nodes.big.parameters.condition"]
    assert diff.edges_added == [{"from": "approve", "to": "audit", "port": "main"}]


def test_an_invalid_save_stores_nothing(database: Database, workspace: uuid.UUID) -> None:
    created = create_workflow(database, workspace, example("transform"))
    broken = example("transform")
    broken["edges"].append({"from": "shape", "to": "nowhere"})
    with pytest.raises(ValidationFailed):
        save_version(database, workspace, created.workflow_id, broken)
    with database.tenant(workspace) as conn:
        count = conn.execute(
            "SELECT latest_version AS v FROM workflows WHERE id = %s", (created.workflow_id,)
        ).fetchone()
    assert count == {"v": 1}
    with pytest.raises(NotFound):
        publish(database, workspace, created.workflow_id, 7)
