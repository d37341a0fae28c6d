"""The dry run's rules in memory (no database, no network): read-only nodes run, LOOP bodies
run per item with their side effects recorded, WAIT does not wait, and a failing node is
reported where it failed."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from loom.builder.dry_run import DryRun, DryRunOptions
from loom.workflows.validation import validate_definition


def _dry_run(definition: dict[str, Any], run_input: Any) -> dict[str, Any]:
    options = DryRunOptions(input=run_input, deadline_seconds=30)
    runner = DryRun(uuid.uuid4(), uuid.uuid4(), options, services=None, llm=None)
    return asyncio.run(runner.run(validate_definition(definition)))


def test_loop_bodies_run_per_item_and_record_their_side_effects() -> None:
    slack = {
        "id": "tell",
        "type": "EXTERNAL_ACTION",
        "subtype": "SLACK",
        "parameters": {
            "credential_id": "missing:slack_bot",
            "channel": "#x",
            "text": "{% $input.item %}",
        },
    }
    body = {
        "nodes": [{"id": "item", "type": "TRIGGER", "subtype": "MANUAL"}, slack],
        "edges": [{"from": "item", "to": "tell"}],
    }
    definition = {
        "name": "loop",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {
                "id": "each",
                "type": "FLOW",
                "subtype": "LOOP",
                "parameters": {"items": "{% $input.names %}", "body": body},
            },
            {"id": "pause", "type": "FLOW", "subtype": "WAIT", "parameters": {"seconds": 3600}},
        ],
        "edges": [{"from": "start", "to": "each"}, {"from": "each", "to": "pause"}],
    }
    started = time.monotonic()
    report = _dry_run(definition, {"names": ["ada", "bob"]})
    assert time.monotonic() - started < 20, "WAIT is recorded, not waited"
    assert report["status"] == "SUCCESS", report
    recorded = {r["node_id"]: r["would_send"] for r in report["recorded"]}
    assert recorded["each[0].tell"]["text"] == "ada" and recorded["each[1].tell"]["text"] == "bob"
    assert "wait_until" in recorded["pause"]
    assert [n["status"] for n in report["nodes"]] == ["completed"] * 3


def test_a_failing_node_is_reported_where_it_failed() -> None:
    definition = {
        "name": "broken",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {
                "id": "fetch",
                "type": "ACTION",
                "subtype": "HTTP_REQUEST",
                "parameters": {"url": "{% $input.url %}"},
            },
            {"id": "after", "type": "ACTION", "subtype": "TRANSFORM", "parameters": {"value": 1}},
        ],
        "edges": [{"from": "start", "to": "fetch"}, {"from": "fetch", "to": "after"}],
    }
    report = _dry_run(definition, {"url": "http://169.254.169.254/latest/meta-data"})
    assert report["status"] == "ERROR" and report["error"]["node_id"] == "fetch"
    nodes = {n["node_id"]: n for n in report["nodes"]}
    assert nodes["fetch"]["status"] == "failed" and nodes["after"]["status"] == "cancelled"
    assert report["recorded"] == []
