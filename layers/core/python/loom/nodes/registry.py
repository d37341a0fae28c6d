"""The node spec registry: every type/subtype Loom knows, and the catalogue export."""

from __future__ import annotations

from typing import Any

from loom.nodes.base import NodeSpec
from loom.workflows.definition import NodeType

_SPECS: dict[tuple[NodeType, str], NodeSpec] = {}


def register(spec: NodeSpec) -> NodeSpec:
    if spec.key in _SPECS and _SPECS[spec.key] is not spec:
        raise ValueError(f"node type {spec.type}.{spec.subtype} is registered twice")
    _SPECS[spec.key] = spec
    return spec


def get_spec(node_type: NodeType | str, subtype: str) -> NodeSpec | None:
    _load_builtins()
    try:
        return _SPECS.get((NodeType(node_type), subtype))
    except ValueError:
        return None


def all_specs() -> list[NodeSpec]:
    _load_builtins()
    return sorted(_SPECS.values(), key=lambda s: (s.type.value, s.subtype))


def catalogue() -> dict[str, Any]:
    """The whole catalogue as JSON, for UIs and the workflow builder."""
    return {"node_types": [spec.catalogue_entry() for spec in all_specs()]}


def _load_builtins() -> None:
    from loom.nodes import builtin  # noqa: F401 - registers on import
