"""The node catalogue: what UIs and the builder learn about every node type."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from loom.nodes.registry import all_specs, catalogue, get_spec

BUILT_IN = {
    ("TRIGGER", "MANUAL"),
    ("ACTION", "TRANSFORM"),
    ("FLOW", "IF"),
    ("FLOW", "SWITCH"),
    ("FLOW", "FILTER"),
    ("FLOW", "MERGE"),
    ("FLOW", "WAIT"),
    ("FLOW", "LOOP"),
    ("EXTERNAL_ACTION", "SLACK"),
    ("EXTERNAL_ACTION", "GITHUB"),
    ("EXTERNAL_ACTION", "NOTION"),
    ("EXTERNAL_ACTION", "EMAIL"),
}


def entries() -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["type"], e["subtype"]): e for e in catalogue()["node_types"]}


def test_every_built_in_spec_is_in_the_catalogue() -> None:
    found = entries()
    assert set(found) >= BUILT_IN
    assert set(found) == {(s.type.value, s.subtype) for s in all_specs()}
    assert len(found) == len(catalogue()["node_types"])  # no type listed twice


def test_the_catalogue_is_json_and_sorted() -> None:
    listed = catalogue()
    assert json.loads(json.dumps(listed)) == listed
    keys = [(e["type"], e["subtype"]) for e in listed["node_types"]]
    assert keys == sorted(keys)


@pytest.mark.parametrize("key", sorted(BUILT_IN), ids=lambda k: ".".join(k))
def test_each_entry_describes_its_node(key: tuple[str, str]) -> None:
    entry = entries()[key]
    assert set(entry) == {
        "type",
        "subtype",
        "description",
        "kind",
        "inputs",
        "outputs",
        "dynamic_outputs",
        "side_effects",
        "parameters",
    }
    assert entry["description"].strip()
    assert entry["kind"] in {"trigger", "task", "wait"}
    assert entry["outputs"]
    schema = entry["parameters"]
    assert schema["type"] == "object"
    assert isinstance(schema.get("properties", {}), dict)
    assert schema.get("additionalProperties") is False  # unknown parameters are errors
    spec = get_spec(*key)
    assert spec is not None
    model: type[BaseModel] = spec.parameters
    assert set(schema.get("properties", {})) == set(model.model_fields)
    assert set(schema.get("required", [])) <= set(schema.get("properties", {}))


def test_only_triggers_and_attachments_have_no_inputs() -> None:
    for (node_type, _), entry in entries().items():
        assert (entry["inputs"] == []) == (node_type in ("TRIGGER", "TOOL", "MEMORY"))
        assert (entry["kind"] == "trigger") == (node_type == "TRIGGER")
        assert (entry["kind"] == "attachment") == (node_type in ("TOOL", "MEMORY"))
        if entry["kind"] == "attachment":
            assert entry["outputs"] == [node_type.lower()], "attachments leave by their kind"


def test_if_leaves_by_true_or_false() -> None:
    entry = entries()[("FLOW", "IF")]
    assert entry["outputs"] == ["true", "false"]
    assert entry["dynamic_outputs"] is False


def test_switch_reports_dynamic_outputs() -> None:
    entry = entries()[("FLOW", "SWITCH")]
    assert entry["dynamic_outputs"] is True
    assert entry["outputs"] == ["default"]
    assert [k for k, e in entries().items() if e["dynamic_outputs"]] == [
        ("FLOW", "SWITCH"),
        ("HUMAN_IN_THE_LOOP", "APPROVAL"),
        ("HUMAN_IN_THE_LOOP", "INPUT"),
    ]
    spec = get_spec("FLOW", "SWITCH")
    assert spec is not None
    cases = [{"port": "big", "equals": 1}, {"port": "small", "equals": 0}]
    assert spec.ports({"value": 1, "cases": cases}) == ("big", "small", "default")


def test_a_timeout_port_exists_only_when_timeouts_route() -> None:
    approval = get_spec("HUMAN_IN_THE_LOOP", "APPROVAL")
    form = get_spec("HUMAN_IN_THE_LOOP", "INPUT")
    assert approval is not None and form is not None
    assert approval.ports({"timeout_action": "fail"}) == ("approve", "reject")
    assert approval.ports({"timeout_action": "route"}) == ("approve", "reject", "timeout")
    assert form.ports({}) == ("main",)
    assert form.ports({"timeout_action": "route"}) == ("main", "timeout")


def test_wait_is_run_by_the_engine() -> None:
    assert entries()[("FLOW", "WAIT")]["kind"] == "wait"
