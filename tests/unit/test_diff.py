"""Structural diffs between two versions of a definition."""

from __future__ import annotations

import json
from typing import Any

from loom.workflows.definition import WorkflowDefinition
from loom.workflows.diff import Change, DefinitionDiff, diff_definitions

Raw = dict[str, Any]


def version(**changes: Any) -> Raw:
    """A small definition; keyword arguments replace its top-level fields."""
    raw: Raw = {
        "name": "orders",
        "description": "Ships orders.",
        "nodes": [
            {"id": "start", "type": "TRIGGER", "subtype": "MANUAL", "position": {"x": 0, "y": 0}},
            {
                "id": "fetch",
                "type": "ACTION",
                "subtype": "TRANSFORM",
                "parameters": {"value": {"url": "https://a.example", "tags": ["x", "y"]}},
                "position": {"x": 100, "y": 0},
            },
            {"id": "pause", "type": "FLOW", "subtype": "WAIT", "parameters": {"seconds": 5}},
        ],
        "edges": [{"from": "start", "to": "fetch"}, {"from": "fetch", "to": "pause"}],
    }
    raw.update(changes)
    return raw


def diff(before: Raw, after: Raw) -> DefinitionDiff:
    return diff_definitions(
        WorkflowDefinition.model_validate(before), WorkflowDefinition.model_validate(after)
    )


def nodes_with(raw: Raw, node_id: str, **fields: Any) -> list[Raw]:
    return [{**n, **fields} if n["id"] == node_id else n for n in raw["nodes"]]


def test_identical_versions_have_an_empty_diff() -> None:
    result = diff(version(), version())
    assert result.empty
    assert result.summary() == "no changes"
    assert result == DefinitionDiff()


def test_moving_nodes_is_not_a_change() -> None:
    base = version()
    moved = nodes_with(base, "fetch", position={"x": 999, "y": -3})
    moved = [
        {k: v for k, v in n.items() if k != "position"} if n["id"] == "start" else n for n in moved
    ]
    assert diff(base, version(nodes=moved)).empty


def test_added_and_removed_nodes_are_sorted_ids() -> None:
    base = version()
    extra = [
        {"id": "zeta", "type": "ACTION", "subtype": "TRANSFORM", "parameters": {"value": 1}},
        {"id": "alpha", "type": "ACTION", "subtype": "TRANSFORM", "parameters": {"value": 2}},
    ]
    after = version(nodes=[n for n in base["nodes"] if n["id"] != "pause"] + extra)
    result = diff(base, after)
    assert result.nodes_added == ["alpha", "zeta"]
    assert result.nodes_removed == ["pause"]
    assert result.nodes_changed == {}


def test_parameter_changes_have_deep_paths() -> None:
    base = version()
    value = {"url": "https://b.example", "tags": ["x", "z"], "new": True}
    after = version(nodes=nodes_with(base, "fetch", parameters={"value": value}))
    assert diff(base, after).nodes_changed == {
        "fetch": [
            Change("nodes.fetch.parameters.value.new", None, True),
            Change("nodes.fetch.parameters.value.tags[1]", "y", "z"),
            Change("nodes.fetch.parameters.value.url", "https://a.example", "https://b.example"),
        ]
    }


def test_a_list_that_changes_length_changes_whole() -> None:
    base = version()
    after = version(
        nodes=nodes_with(
            base, "fetch", parameters={"value": {"url": "https://a.example", "tags": ["x"]}}
        )
    )
    assert diff(base, after).nodes_changed == {
        "fetch": [Change("nodes.fetch.parameters.value.tags", ["x", "y"], ["x"])]
    }


def test_node_settings_and_kind_are_compared() -> None:
    base = version()
    nodes = nodes_with(base, "pause", retry={"max_attempts": 3}, on_error="continue", name="Nap")
    nodes = nodes_with(version(nodes=nodes), "fetch", subtype="TRANSFORM", timeout_seconds=30)
    changed = diff(base, version(nodes=nodes)).nodes_changed
    assert [c.path for c in changed["fetch"]] == ["nodes.fetch.timeout_seconds"]
    assert [(c.path, c.before, c.after) for c in changed["pause"]] == [
        ("nodes.pause.name", None, "Nap"),
        ("nodes.pause.on_error", "fail", "continue"),
        (
            "nodes.pause.retry",
            None,
            {
                "max_attempts": 3,
                "backoff_seconds": 1.0,
                "backoff_rate": 2.0,
                "max_backoff_seconds": 300.0,
                "jitter": True,
            },
        ),
    ]


def test_values_compare_as_json() -> None:
    base = version()
    same = version(nodes=nodes_with(base, "pause", parameters={"seconds": 5.0}))
    assert diff(base, same).empty
    flag = version(nodes=nodes_with(base, "pause", parameters={"seconds": True}))
    (change,) = diff(base, flag).nodes_changed["pause"]
    assert change.after is True
    listed = version(nodes=nodes_with(base, "pause", parameters={"seconds": [5]}))
    assert diff(base, listed).nodes_changed == {
        "pause": [Change("nodes.pause.parameters.seconds", 5, [5])]
    }


def test_edges_added_and_removed() -> None:
    base = version()
    after = version(
        edges=[
            {"from": "start", "to": "fetch"},
            {"from": "start", "to": "pause", "condition": "{% $input.wait %}"},
            {"from": "fetch", "to": "pause", "port": "main", "condition": "{% true %}"},
        ]
    )
    result = diff(base, after)
    assert result.edges_added == [
        {"from": "fetch", "to": "pause", "port": "main", "condition": "{% true %}"},
        {"from": "start", "to": "pause", "port": "main", "condition": "{% $input.wait %}"},
    ]
    assert result.edges_removed == [{"from": "fetch", "to": "pause", "port": "main"}]
    assert not result.nodes_changed


def test_reordering_edges_is_not_a_change() -> None:
    base = version()
    assert diff(base, version(edges=list(reversed(base["edges"])))).empty


def test_name_and_description_changes() -> None:
    result = diff(version(), version(name="orders v2", description=""))
    assert result.fields_changed == [
        Change("name", "orders", "orders v2"),
        Change("description", "Ships orders.", ""),
    ]
    assert result.summary() == "name changed, description changed"


def test_summary_counts_everything() -> None:
    base = version()
    new = [
        {"id": "a", "type": "ACTION", "subtype": "TRANSFORM", "parameters": {"value": 1}},
        {"id": "b", "type": "ACTION", "subtype": "TRANSFORM", "parameters": {"value": 2}},
    ]
    nodes = nodes_with(base, "fetch", parameters={"value": 0})
    nodes = nodes_with(version(nodes=nodes), "start", name="Go")
    nodes = [n for n in nodes if n["id"] != "pause"] + new
    edges = [
        {"from": "start", "to": "fetch"},
        {"from": "fetch", "to": "a"},
        {"from": "fetch", "to": "b"},
    ]
    result = diff(base, version(nodes=nodes, edges=edges))
    assert result.summary() == "+2 nodes, -1 node, 2 changed, +2 edges, -1 edge"
    assert not result.empty


def test_to_dict_is_json() -> None:
    base = version()
    result = diff(base, version(name="renamed", edges=base["edges"][:1]))
    out = result.to_dict()
    assert json.loads(json.dumps(out)) == out
    assert out["fields_changed"] == [{"path": "name", "before": "orders", "after": "renamed"}]
    assert out["edges_removed"] == [{"from": "fetch", "to": "pause", "port": "main"}]
    assert out["summary"] == "-1 edge, name changed"
