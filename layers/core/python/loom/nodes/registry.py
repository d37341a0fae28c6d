"""The node spec registry: every type/subtype Loom knows, and the catalogue export.

A built-in spec is registered by importing its module, found in ``BUILTIN`` by its key:
looking one up imports that module only. A function that plans or runs a workflow thus
loads the node modules of the workflow's nodes, not every node module (HTTP_REQUEST brings
httpx, AI_AGENT the agent loop); the catalogue loads them all.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from loom.nodes.base import NodeSpec
from loom.workflows.definition import NodeType

_SPECS: dict[tuple[NodeType, str], NodeSpec] = {}
# The catalogue as last built, and the specs it was built from: each spec's JSON Schema
# takes milliseconds to build, and a registered spec never changes.
_catalogue: tuple[tuple[int, ...], dict[str, Any]] = ((), {})

_N = "loom.nodes."
# (type, subtype) -> the module that registers it (tests/unit/test_catalogue.py checks it).
BUILTIN: dict[tuple[NodeType, str], str] = {
    (NodeType.ACTION, "CODE"): _N + "code",
    (NodeType.ACTION, "HTTP_REQUEST"): _N + "http_request",
    (NodeType.ACTION, "TRANSFORM"): _N + "transform",
    (NodeType.AI_AGENT, "AGENT"): _N + "ai_agent",
    (NodeType.EXTERNAL_ACTION, "EMAIL"): _N + "external_email",
    (NodeType.EXTERNAL_ACTION, "GITHUB"): _N + "external_github",
    (NodeType.EXTERNAL_ACTION, "NOTION"): _N + "external_notion",
    (NodeType.EXTERNAL_ACTION, "SLACK"): _N + "external_slack",
    (NodeType.FLOW, "FILTER"): _N + "flow_filter",
    (NodeType.FLOW, "IF"): _N + "flow_if",
    (NodeType.FLOW, "LOOP"): _N + "flow_loop",
    (NodeType.FLOW, "MERGE"): _N + "flow_merge",
    (NodeType.FLOW, "SWITCH"): _N + "flow_switch",
    (NodeType.FLOW, "WAIT"): _N + "flow_wait",
    (NodeType.HUMAN_IN_THE_LOOP, "APPROVAL"): _N + "human",
    (NodeType.HUMAN_IN_THE_LOOP, "INPUT"): _N + "human",
    (NodeType.MEMORY, "CONVERSATION"): _N + "agent_memory",
    (NodeType.MEMORY, "VECTOR"): _N + "agent_memory",
    (NodeType.TOOL, "CODE"): _N + "agent_tools",
    (NodeType.TOOL, "HTTP_REQUEST"): _N + "agent_tools",
    (NodeType.TOOL, "MCP"): _N + "agent_tools",
    (NodeType.TOOL, "WORKFLOW"): _N + "agent_tools",
    (NodeType.TRIGGER, "CRON"): _N + "trigger_cron",
    (NodeType.TRIGGER, "EMAIL"): _N + "trigger_email",
    (NodeType.TRIGGER, "GITHUB"): _N + "trigger_github",
    (NodeType.TRIGGER, "MANUAL"): _N + "trigger_manual",
    (NodeType.TRIGGER, "SLACK"): _N + "trigger_slack",
    (NodeType.TRIGGER, "WEBHOOK"): _N + "trigger_webhook",
}


def register(spec: NodeSpec) -> NodeSpec:
    if spec.key in _SPECS and _SPECS[spec.key] is not spec:
        raise ValueError(f"node type {spec.type}.{spec.subtype} is registered twice")
    _SPECS[spec.key] = spec
    return spec


def get_spec(node_type: NodeType | str, subtype: str) -> NodeSpec | None:
    try:
        key = (NodeType(node_type), subtype)
    except ValueError:
        return None
    if key not in _SPECS and key in BUILTIN:
        import_module(BUILTIN[key])  # registers on import
    return _SPECS.get(key)


def all_specs() -> list[NodeSpec]:
    for module in sorted(set(BUILTIN.values())):
        import_module(module)
    return sorted(_SPECS.values(), key=lambda s: (s.type.value, s.subtype))


def catalogue() -> dict[str, Any]:
    """The whole catalogue as JSON, for UIs and the workflow builder: shared, not to be
    changed by its callers."""
    global _catalogue
    specs = all_specs()
    built_from = tuple(id(spec) for spec in specs)
    if _catalogue[0] != built_from:
        _catalogue = (built_from, {"node_types": [spec.catalogue_entry() for spec in specs]})
    return _catalogue[1]
