"""What changed between two versions of a definition, node by node and edge by edge.

Nodes are matched by id and compared as JSON, deeply; ``position`` is layout, not
behaviour, so it is ignored. Edges have no identity of their own and are compared as a
set of ``(from, to, port, condition)``. Everything is sorted so a diff reads the same
every time. A value that is absent on one side is ``None`` there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loom.workflows.definition import Edge, Node, WorkflowDefinition
from loom.workflows.validation import json_path

_IGNORED_NODE_FIELDS = {"id", "position"}
_COMPARED_FIELDS = ("name", "description")

EdgeKey = tuple[str, str, str, str | None]


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class DefinitionDiff:
    nodes_added: list[str] = field(default_factory=list)
    nodes_removed: list[str] = field(default_factory=list)
    nodes_changed: dict[str, list[Change]] = field(default_factory=dict)
    edges_added: list[dict[str, Any]] = field(default_factory=list)
    edges_removed: list[dict[str, Any]] = field(default_factory=list)
    fields_changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.nodes_added
            or self.nodes_removed
            or self.nodes_changed
            or self.edges_added
            or self.edges_removed
            or self.fields_changed
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes_added": list(self.nodes_added),
            "nodes_removed": list(self.nodes_removed),
            "nodes_changed": {
                node_id: [c.to_dict() for c in changes]
                for node_id, changes in self.nodes_changed.items()
            },
            "edges_added": [dict(e) for e in self.edges_added],
            "edges_removed": [dict(e) for e in self.edges_removed],
            "fields_changed": [c.to_dict() for c in self.fields_changed],
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """One line, e.g. ``+2 nodes, -1 node, 3 changed, +1 edge``."""
        parts = [
            _count("+", len(self.nodes_added), "node"),
            _count("-", len(self.nodes_removed), "node"),
            f"{len(self.nodes_changed)} changed" if self.nodes_changed else "",
            _count("+", len(self.edges_added), "edge"),
            _count("-", len(self.edges_removed), "edge"),
            *(f"{c.path} changed" for c in self.fields_changed),
        ]
        return ", ".join(p for p in parts if p) or "no changes"


def diff_definitions(before: WorkflowDefinition, after: WorkflowDefinition) -> DefinitionDiff:
    old = {n.id: n for n in before.nodes}
    new = {n.id: n for n in after.nodes}
    changed: dict[str, list[Change]] = {}
    for node_id in sorted(old.keys() & new.keys()):
        changes = _compare(f"nodes.{node_id}", _node_json(old[node_id]), _node_json(new[node_id]))
        if changes:
            changed[node_id] = changes
    old_edges = {_edge_key(e) for e in before.edges}
    new_edges = {_edge_key(e) for e in after.edges}
    return DefinitionDiff(
        nodes_added=sorted(new.keys() - old.keys()),
        nodes_removed=sorted(old.keys() - new.keys()),
        nodes_changed=changed,
        edges_added=_edge_list(new_edges - old_edges),
        edges_removed=_edge_list(old_edges - new_edges),
        fields_changed=[
            Change(name, getattr(before, name), getattr(after, name))
            for name in _COMPARED_FIELDS
            if getattr(before, name) != getattr(after, name)
        ],
    )


def _node_json(node: Node) -> dict[str, Any]:
    return node.model_dump(mode="json", by_alias=True, exclude=_IGNORED_NODE_FIELDS)


def _compare(path: str, before: Any, after: Any) -> list[Change]:
    """Changes from ``before`` to ``after``, down to the leaves of objects and of lists
    of the same length; a list that changes length changes as a whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[Change] = []
        for key in sorted(before.keys() | after.keys()):
            changes += _compare(json_path(path, key), before.get(key), after.get(key))
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [
            change
            for index, (b, a) in enumerate(zip(before, after, strict=True))
            for change in _compare(json_path(path, index), b, a)
        ]
    if before == after and isinstance(before, bool) == isinstance(after, bool):
        return []  # 5 and 5.0 are one JSON number; true and 1 are not
    return [Change(path, before, after)]


def _edge_key(edge: Edge) -> EdgeKey:
    return (edge.source, edge.target, edge.port, edge.condition)


def _edge_list(keys: set[EdgeKey]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for source, target, port, condition in sorted(
        keys, key=lambda k: (*k[:3], k[3] is not None, k[3] or "")
    ):
        edge: dict[str, Any] = {"from": source, "to": target, "port": port}
        if condition is not None:
            edge["condition"] = condition
        out.append(edge)
    return out


def _count(sign: str, count: int, noun: str) -> str:
    return f"{sign}{count} {noun}{'' if count == 1 else 's'}" if count else ""
