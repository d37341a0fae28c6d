"""ACTION.CODE in workflows on the local engine and the real database."""

from __future__ import annotations

from typing import Any

import pytest

from loom.engine.states import RunStatus
from tests.utils.engine import Harness

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

SUMMARISE = """
import statistics
from collections import defaultdict


def main(inputs):
    orders = inputs["nodes"]["orders"]
    totals = defaultdict(float)
    for order in orders:
        totals[order["customer"]] += order["amount"]
    print(f"{len(totals)} customers")
    return {
        "currency": inputs["input"]["currency"],
        "totals": dict(sorted(totals.items())),
        "median": statistics.median(o["amount"] for o in orders),
        "literal": "{% $input %}",
    }
"""


def _workflow(code: str, **parameters: Any) -> dict[str, Any]:
    return {
        "name": "orders summary",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
            {
                "id": "orders",
                "type": "ACTION",
                "subtype": "TRANSFORM",
                "parameters": {"value": "{% $input.orders %}"},
            },
            {
                "id": "summary",
                "type": "ACTION",
                "subtype": "CODE",
                "parameters": {"code": code, **parameters},
            },
        ],
        "edges": [{"from": "start", "to": "orders"}, {"from": "orders", "to": "summary"}],
    }


ORDERS = {
    "currency": "EUR",
    "orders": [
        {"customer": "ada", "amount": 10.0},
        {"customer": "bob", "amount": 4.5},
        {"customer": "ada", "amount": 2.5},
    ],
}


def test_a_code_node_transforms_upstream_output(engine_harness: Harness) -> None:
    result = engine_harness.run(_workflow(SUMMARISE), ORDERS)
    assert result.status is RunStatus.SUCCESS
    assert result.output == {
        "currency": "EUR",
        "totals": {"ada": 12.5, "bob": 4.5},
        "median": 4.5,
        "literal": "{% $input %}",  # code is deferred: never evaluated by the engine
    }
    node = engine_harness.nodes(result.run_id)["summary"]
    assert node["metadata"]["logs"] == "2 customers\n"
    assert node["metadata"]["duration_ms"] > 0


def test_a_failing_code_node_fails_the_run_with_its_traceback(engine_harness: Harness) -> None:
    code = "def main(inputs):\n    orders = inputs['nodes']['orders']\n    return orders[0]['vat']"
    result = engine_harness.run(_workflow(code), ORDERS)
    assert result.status is RunStatus.ERROR
    error = engine_harness.nodes(result.run_id)["summary"]["error"]
    assert error["code"] == "code_failed"
    assert error["retryable"] is False
    assert error["message"] == "main() raised KeyError (line 3): 'vat'"
    assert error["details"]["traceback"].endswith("line 3, in main\n    return orders[0]['vat']")


def test_a_code_node_is_stopped_at_its_timeout(engine_harness: Harness) -> None:
    code = "def main(inputs):\n    while True:\n        pass"
    result = engine_harness.run(_workflow(code, timeout_seconds=1), ORDERS)
    assert result.status is RunStatus.ERROR
    error = engine_harness.nodes(result.run_id)["summary"]["error"]
    assert error["code"] == "code_timeout"
    assert "within 1 s" in error["message"]
