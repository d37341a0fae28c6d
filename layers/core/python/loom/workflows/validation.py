"""Validation on save: every problem in a definition at once, each at a JSON path.

Validating the whole document with pydantic would stop at the shape and know nothing of
node specs, expressions or the graph. So each node and edge is validated on its own (one
bad node must not hide the problems of another), parameters against their node's spec,
expressions for syntax, and the graph last. Paths look like ``nodes[3].parameters.url``
and ``edges[2].from``; ``""`` is the document itself.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from loom.errors import ValidationFailed
from loom.expressions import check_syntax, contains_expression, find_expressions
from loom.nodes.base import NodeSpec
from loom.nodes.registry import all_specs, get_spec
from loom.workflows.definition import (
    ATTACHMENT_TYPES,
    ERROR_PORT,
    MAX_DEFINITION_BYTES,
    MAX_EDGES,
    MAX_NODES,
    Edge,
    Node,
    NodeType,
    WorkflowDefinition,
)

# How deep objects and lists may nest in a definition (the document is level 0). Pydantic
# refuses to serialize values nested about 255 deep; LOOP bodies nest 4 levels per loop.
MAX_DEPTH = 200
SOLUTION = "Fix each problem in `details` (each names its place in the definition) and save again."

# Parameters that hold a definition of their own, validated recursively, by node type.
_SUB_DEFINITIONS: dict[tuple[NodeType, str], str] = {(NodeType.FLOW, "LOOP"): "body"}
_CYCLE_NAMES = 10  # node ids a cycle message lists at most
M = TypeVar("M", bound=BaseModel)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition, at the JSON path where it is."""

    path: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


def json_path(path: str, *keys: str | int) -> str:
    """Extend a JSON path: ``[3]`` for indexes, ``.name`` for plain keys, ``["a b"]`` else
    (the form ``loom.expressions.find_expressions`` uses too)."""
    for key in keys:
        if isinstance(key, int):
            path = f"{path}[{key}]"
        elif _IDENTIFIER.fullmatch(key):
            path = f"{path}.{key}" if path else key
        else:
            path = f"{path}[{json.dumps(key, ensure_ascii=False)}]"
    return path


def parse_json(text: str | bytes) -> Any:
    """Parse a definition's JSON text, refusing oversized text before parsing it."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DEFINITION_BYTES:
        raise _failed([_too_large_bytes(size)])
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    except UnicodeDecodeError:
        reason = "it is not UTF-8 text"
    except ValueError as exc:  # from _no_constant
        reason = str(exc)
    except RecursionError:
        reason = "it is nested too deeply"
    raise _failed([Problem("", "invalid_json", f"The definition is not valid JSON: {reason}.")])


def find_problems(raw: Any) -> tuple[WorkflowDefinition | None, list[Problem]]:
    """Every problem in ``raw``; the definition only when there are none. Never raises."""
    problems: list[Problem] = []
    definition = _check_document(raw, problems)
    return (None, problems) if problems else (definition, [])


def validate_definition(raw: Any) -> WorkflowDefinition:
    definition, problems = find_problems(raw)
    if definition is None:
        raise _failed(problems)
    return definition


def _failed(problems: list[Problem]) -> ValidationFailed:
    count = len(problems)
    return ValidationFailed(
        f"The workflow definition has {count} problem{'' if count == 1 else 's'}.",
        solution=SOLUTION,
        details=[p.to_dict() for p in problems],
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _too_large_bytes(size: int) -> Problem:
    return Problem(
        "",
        "too_large",
        f"The definition is {size:,} bytes; the limit is {MAX_DEFINITION_BYTES:,} bytes.",
    )


def _check_document(raw: Any, problems: list[Problem]) -> WorkflowDefinition | None:
    """The whole-document checks: size (counts first, they are free), then the rest."""
    if _count_problems(raw, "", "The definition", problems):
        return None
    too_deep = _too_deep(raw)
    if too_deep is not None:
        message = f"The definition nests deeper than {MAX_DEPTH} levels at {too_deep}."
        problems.append(Problem(too_deep, "too_large", message))
        return None
    try:
        text = json.dumps(raw, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        problems.append(Problem("", "invalid_json", f"The definition is not JSON: {exc}."))
        return None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DEFINITION_BYTES:
        problems.append(_too_large_bytes(size))
        return None
    return _check_definition(raw, "", "The definition", problems)


def _too_deep(raw: Any) -> str | None:
    """The path of an object or list nested deeper than ``MAX_DEPTH``, if there is one.

    Iterative, and it stops at the limit, so any depth (even a cycle) is safe to walk;
    every later check can then recurse, serialize and validate without a RecursionError.
    """
    if not isinstance(raw, dict | list):
        return None
    keys: list[str | int] = []  # the path to the container being visited
    stack: list[tuple[int, str | int, dict[Any, Any] | list[Any]]] = [(0, "", raw)]
    while stack:
        depth, key, value = stack.pop()
        del keys[max(depth - 1, 0) :]
        if depth:
            keys.append(key)
        if depth > MAX_DEPTH:
            return json_path("", *keys)
        items = (
            ((str(k), v) for k, v in value.items()) if isinstance(value, dict) else enumerate(value)
        )
        stack.extend((depth + 1, k, v) for k, v in items if isinstance(v, dict | list))
    return None


def _count_problems(raw: Any, prefix: str, what: str, problems: list[Problem]) -> bool:
    found = False
    if isinstance(raw, dict):
        for key, limit in (("nodes", MAX_NODES), ("edges", MAX_EDGES)):
            items = raw.get(key)
            if isinstance(items, list) and len(items) > limit:
                found = True
                problems.append(
                    Problem(
                        json_path(prefix, key),
                        "too_large",
                        f"{what} has {len(items):,} {key}; the limit is {limit:,}.",
                    )
                )
    return found


@dataclass(frozen=True)
class _NodeFacts:
    """What the graph checks need of a node, even one with problems of its own."""

    index: int
    type: NodeType | None
    ports: tuple[str, ...] | None  # None when its ports can't be known


@dataclass(frozen=True)
class _EdgeFacts:
    index: int
    source: str | None
    target: str | None
    port: str | None


def _check_definition(
    raw: Any, prefix: str, what: str, problems: list[Problem]
) -> WorkflowDefinition | None:
    """Check one definition (the document or a LOOP body) and everything in it."""
    before = len(problems)
    if not isinstance(raw, dict):
        problems.append(Problem(prefix, "invalid_field", f"{what} must be a JSON object."))
        return None
    header = _check_header(raw, prefix, what, problems)
    raw_nodes = _list_field(raw, "nodes", prefix, what, problems, required=True)
    raw_edges = _list_field(raw, "edges", prefix, what, problems, required=False)
    nodes: list[Node] = []
    facts: dict[str, _NodeFacts] = {}
    for index, raw_node in enumerate(raw_nodes):
        node = _check_node(raw_node, index, json_path(prefix, "nodes", index), facts, problems)
        if node is not None:
            nodes.append(node)
    edges: list[Edge] = []
    edge_facts: list[_EdgeFacts] = []
    for index, raw_edge in enumerate(raw_edges):
        edge = _check_edge(raw_edge, index, json_path(prefix, "edges", index), edge_facts, problems)
        if edge is not None:
            edges.append(edge)
    if isinstance(raw.get("nodes"), list):
        # A trigger with a bad id still counts: "no trigger" would mislead.
        has_trigger = any(isinstance(n, dict) and n.get("type") == "TRIGGER" for n in raw_nodes)
        _check_graph(facts, edge_facts, has_trigger, prefix, what, problems)
    if header is None or len(problems) > before:
        return None
    return header.model_copy(update={"nodes": nodes, "edges": edges})


def _check_header(
    raw: dict[str, Any], prefix: str, what: str, problems: list[Problem]
) -> WorkflowDefinition | None:
    """name, description and unknown fields: the model's own rules, without nodes and edges."""
    header = {k: v for k, v in raw.items() if k not in ("nodes", "edges")}
    definition, errors = _validate(WorkflowDefinition, {**header, "nodes": []})
    for error in errors:
        problems.append(_field_problem(raw, error, prefix, what))
    return definition


def _list_field(
    raw: dict[str, Any],
    key: str,
    prefix: str,
    what: str,
    problems: list[Problem],
    *,
    required: bool,
) -> list[Any]:
    path = json_path(prefix, key)
    if key not in raw:
        if required:
            problems.append(Problem(path, "missing_field", f"{what} has no `{key}` list."))
        return []
    value = raw[key]
    if not isinstance(value, list):
        problems.append(Problem(path, "invalid_field", f"{what}: `{key}` must be a list."))
        return []
    return value


def _check_node(
    raw: Any, index: int, path: str, facts: dict[str, _NodeFacts], problems: list[Problem]
) -> Node | None:
    if not isinstance(raw, dict):
        problems.append(Problem(path, "invalid_field", f"Node {index} must be an object."))
        return None
    node, errors = _validate(Node, raw)
    broken = {error["loc"][0] for error in errors if error["loc"]}
    node_id = raw["id"] if "id" not in broken else None
    label = f"Node '{node_id}'" if node_id is not None else f"Node {index}"
    for error in errors:
        if error["loc"] == ("type",) and error["type"] == "enum":
            known = ", ".join(t.value for t in NodeType)
            message = f"{label} has an unknown type {raw['type']!r}; the types are {known}."
            problems.append(Problem(json_path(path, "type"), "unknown_node_type", message))
        else:
            problems.append(_field_problem(raw, error, path, label))

    node_type = NodeType(raw["type"]) if "type" not in broken else None
    spec = None
    if node_type is not None and "subtype" not in broken:
        spec = get_spec(node_type, raw["subtype"])
        if spec is None:
            problems.append(_unknown_subtype(node_type, raw["subtype"], label, path))
    parameters = raw.get("parameters", {}) if "parameters" not in broken else None
    ports: tuple[str, ...] | None = None
    if parameters is not None:
        _check_expressions(parameters, spec, json_path(path, "parameters"), label, problems)
        if spec is not None:
            ports = _check_parameters(spec, parameters, label, path, problems)
    if ports is not None and "on_error" not in broken and raw.get("on_error") == "route":
        ports = (*ports, ERROR_PORT)

    if node_id is not None:
        if node_id in facts:
            first = facts[node_id].index
            message = f"{label} has the same id as node {first}; node ids must be unique."
            problems.append(Problem(json_path(path, "id"), "duplicate_node_id", message))
        else:
            facts[node_id] = _NodeFacts(index, node_type, ports)
    return node


def _unknown_subtype(node_type: NodeType, subtype: str, label: str, path: str) -> Problem:
    known = sorted(s.subtype for s in all_specs() if s.type == node_type)
    listed = (
        f"the {node_type.value} subtypes are {', '.join(known)}"
        if known
        else f"there are no {node_type.value} nodes yet"
    )
    message = f"{label} has an unknown subtype {node_type.value}.{subtype}; {listed}."
    return Problem(json_path(path, "subtype"), "unknown_node_type", message)


def _check_parameters(
    spec: NodeSpec, parameters: dict[str, Any], label: str, path: str, problems: list[Problem]
) -> tuple[str, ...] | None:
    """Check parameters against the spec, expression-aware; return the node's output ports.

    A value holding an expression is only known at run time, so type errors at such a
    value are dropped; missing and unknown parameters are still reported. A deferred
    parameter holding an expression anywhere is only checked for presence. The ports are
    None when the spec derives them from parameters that did not validate as they are.
    """
    prefix = json_path(path, "parameters")
    errors = _validate(spec.parameters, parameters)[1]
    located = [(error, _locate(parameters, error)) for error in errors]
    # A union reports each member's error; one at a value inside another's is the one meant.
    above = {tuple(keys[:i]) for _, (keys, _) in located for i in range(len(keys))}
    seen: set[tuple[str, str]] = set()
    for error, (keys, value) in located:
        if error["type"] not in ("missing", "extra_forbidden") and (
            tuple(keys) in above
            or contains_expression(value)
            or (keys and keys[0] in spec.deferred and contains_expression(parameters[keys[0]]))
        ):
            continue
        problem = _parameter_problem(spec, error, keys, json_path(prefix, *keys), label)
        if (problem.path, problem.code) not in seen:
            seen.add((problem.path, problem.code))
            problems.append(problem)
    sub = _SUB_DEFINITIONS.get(spec.key)
    if sub is not None and sub in parameters:
        _check_sub_definition(parameters[sub], sub, json_path(prefix, sub), label, problems)
    if spec.output_ports is not None and errors:
        return None
    return spec.ports(parameters)


def _check_sub_definition(
    raw: Any, key: str, path: str, label: str, problems: list[Problem]
) -> None:
    """Validate a nested definition; the parameters model has reported any other type."""
    if not isinstance(raw, dict):
        if not contains_expression(raw):
            return
        message = f"{label}: `{key}` must be a definition object "
        message += "({nodes, edges}); it is never evaluated, so it can't be an expression."
        problems.append(Problem(path, "invalid_parameter", message))
        return
    what = f"The `{key}` of {label.replace('Node', 'node', 1)}"
    if not _count_problems(raw, path, what, problems):
        _check_definition({"name": key, **raw}, path, what, problems)


def _parameter_problem(
    spec: NodeSpec, error: ErrorDetails, keys: Sequence[str | int], path: str, label: str
) -> Problem:
    name = json_path("", *keys)
    if error["type"] == "missing":
        return Problem(path, "missing_parameter", f"{label} needs the parameter `{name}`.")
    if error["type"] == "extra_forbidden":
        model: type[BaseModel] = spec.parameters
        known = ", ".join(model.model_fields) or "none"
        message = f"{label} has an unknown parameter `{name}`; its parameters are: {known}."
        return Problem(path, "unknown_parameter", message)
    what = f"parameter `{name}`" if name else "parameters"
    return Problem(path, "invalid_parameter", f"{label}: {what}: {_reason(error)}.")


def _check_expressions(
    parameters: dict[str, Any],
    spec: NodeSpec | None,
    path: str,
    label: str,
    problems: list[Problem],
) -> None:
    sub = _SUB_DEFINITIONS.get(spec.key) if spec is not None else None
    for name, value in parameters.items():
        # A sub-definition's expressions are checked where they stand, by its own nodes.
        if name != sub and contains_expression(value):
            _check_syntax(value, json_path(path, name), label, problems)


def _check_syntax(value: Any, path: str, label: str, problems: list[Problem]) -> None:
    for where, source in find_expressions(value, path):
        reason = check_syntax(source)
        if reason is not None:
            message = f"{label}: the expression at {where} does not parse: {reason}."
            problems.append(Problem(where, "expression_syntax", message))


def _check_edge(
    raw: Any, index: int, path: str, facts: list[_EdgeFacts], problems: list[Problem]
) -> Edge | None:
    if not isinstance(raw, dict):
        problems.append(Problem(path, "invalid_field", f"Edge {index} must be an object."))
        return None
    edge, errors = _validate(Edge, raw)
    for error in errors:
        problems.append(_field_problem(raw, error, path, f"Edge {index}"))
    broken = {error["loc"][0] for error in errors if error["loc"]}
    condition = raw.get("condition")
    if isinstance(condition, str):
        if _is_expression(condition):
            _check_syntax(condition, json_path(path, "condition"), f"Edge {index}", problems)
        else:
            message = f"Edge {index}: `condition` must be one {{% expression %}}."
            problems.append(Problem(json_path(path, "condition"), "invalid_field", message))
    facts.append(
        _EdgeFacts(
            index,
            raw["from"] if "from" not in broken else None,
            raw["to"] if "to" not in broken else None,
            raw.get("port", Edge.model_fields["port"].default) if "port" not in broken else None,
        )
    )
    return edge


def _is_expression(text: str) -> bool:
    """A string that is exactly one ``{% ... %}``, so it evaluates to a value, not text."""
    found = find_expressions(text, "")
    return len(found) == 1 and text.strip() == f"{{%{found[0][1]}%}}"


def _check_graph(
    nodes: dict[str, _NodeFacts],
    edges: list[_EdgeFacts],
    has_trigger: bool,
    prefix: str,
    what: str,
    problems: list[Problem],
) -> None:
    """Dangling, duplicate and misrouted edges; cycles; a trigger; reachability."""
    edges_path = json_path(prefix, "edges")
    successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    seen: dict[tuple[str, str, str], int] = {}
    for edge in edges:
        path = json_path(edges_path, edge.index)
        known = True
        for end, node_id in (("from", edge.source), ("to", edge.target)):
            if node_id is not None and node_id not in nodes:
                known = False
                message = f"Edge {edge.index} {end} '{node_id}' names no node."
                problems.append(Problem(json_path(path, end), "dangling_edge", message))
        if edge.source is None or edge.target is None or not known:
            continue
        successors[edge.source].append(edge.target)
        _check_edge_ends(edge, nodes, path, problems)
        if edge.port is not None:
            key = (edge.source, edge.target, edge.port)
            if key in seen:
                message = (
                    f"Edge {edge.index} repeats edge {seen[key]}: {edge.source} -> "
                    f"{edge.target} by port '{edge.port}'."
                )
                problems.append(Problem(path, "duplicate_edge", message))
            else:
                seen[key] = edge.index
    for cycle in _cycles(successors):
        problems.append(Problem(edges_path, "cycle", _cycle_message(cycle)))
    _check_attachments(nodes, successors, prefix, problems)
    if not has_trigger:
        message = f"{what} has no TRIGGER node, so nothing can start it."
        problems.append(Problem(json_path(prefix, "nodes"), "no_trigger", message))
        return
    triggers = [n for n, facts in nodes.items() if facts.type is NodeType.TRIGGER]
    reached = _reachable(triggers, successors)
    for node_id, facts in nodes.items():
        if node_id not in reached and facts.type not in ATTACHMENT_TYPES:
            message = f"Node '{node_id}' can't be reached from any trigger."
            problems.append(
                Problem(json_path(prefix, "nodes", facts.index), "unreachable_node", message)
            )


def _check_attachments(
    nodes: dict[str, _NodeFacts],
    successors: Mapping[str, list[str]],
    prefix: str,
    problems: list[Problem],
) -> None:
    """TOOL and MEMORY nodes lead only into AI_AGENT nodes, and nothing leads into them."""
    for node_id, facts in nodes.items():
        if facts.type is None or facts.type not in ATTACHMENT_TYPES:
            continue
        path = json_path(prefix, "nodes", facts.index)
        targets = successors.get(node_id, [])
        if not targets:
            message = (
                f"{facts.type.value} node '{node_id}' is attached to no AI_AGENT node; add an "
                "edge from it to the agent that uses it."
            )
            problems.append(Problem(path, "unattached", message))
        for target in targets:
            if nodes[target].type is not NodeType.AI_AGENT:
                message = (
                    f"{facts.type.value} node '{node_id}' leads into '{target}', which is not "
                    "an AI_AGENT node; tools and memory attach only to agents."
                )
                problems.append(Problem(path, "attachment_target", message))
    for node_id, targets in successors.items():
        for target in targets:
            if nodes[target].type in ATTACHMENT_TYPES:
                kind = nodes[target].type
                message = (
                    f"'{node_id}' leads into {kind} node '{target}'; tools and memory are "
                    "used by agents, not run as steps."
                )
                where = json_path(prefix, "nodes", nodes[target].index)
                problems.append(Problem(where, "edge_into_attachment", message))


def _check_edge_ends(
    edge: _EdgeFacts, nodes: dict[str, _NodeFacts], path: str, problems: list[Problem]
) -> None:
    source, target = nodes[edge.source or ""], nodes[edge.target or ""]
    if target.type is NodeType.TRIGGER:
        message = f"Edge {edge.index} leads into trigger '{edge.target}'; triggers only start runs."
        problems.append(Problem(json_path(path, "to"), "edge_into_trigger", message))
    if source.ports is not None and edge.port is not None and edge.port not in source.ports:
        valid = ", ".join(source.ports) or "none"
        message = (
            f"Edge {edge.index} leaves '{edge.source}' by port '{edge.port}', which it does not "
            f"have; its ports are: {valid}."
        )
        problems.append(Problem(json_path(path, "port"), "unknown_port", message))


def _cycles(successors: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle for each strongly connected component that has one."""
    return [
        _cycle_in(root, component, successors)
        for root, component in _components(successors)
        if len(component) > 1 or root in successors[root]
    ]


def _components(successors: Mapping[str, list[str]]) -> list[tuple[str, set[str]]]:
    """Strongly connected components with their roots (Tarjan's, iteratively, so a long
    chain can't exhaust the stack), in order of discovery of their roots."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, set[str]]] = []
    for root in successors:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = successors[node]
            if child < len(targets):
                work.append((node, child + 1))
                nxt = targets[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                found.append((node, _pop_component(node, stack, on_stack)))
    return sorted(found, key=lambda item: index[item[0]])


def _pop_component(root: str, stack: list[str], on_stack: set[str]) -> set[str]:
    component: set[str] = set()
    while root not in component:
        member = stack.pop()
        on_stack.discard(member)
        component.add(member)
    return component


def _cycle_message(cycle: list[str]) -> str:
    if len(cycle) == 1:
        return f"Node '{cycle[0]}' has an edge to itself; a workflow must not loop back."
    shown = [f"'{n}'" for n in cycle[:_CYCLE_NAMES]]
    if len(cycle) > _CYCLE_NAMES:
        shown.append(f"... ({len(cycle) - _CYCLE_NAMES} more)")
    names = " -> ".join([*shown, f"'{cycle[0]}'"])
    return f"Nodes {names} form a cycle; a workflow must not loop back on itself."


def _cycle_in(start: str, component: set[str], successors: Mapping[str, list[str]]) -> list[str]:
    """The shortest cycle through ``start`` inside its component (breadth first)."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in successors[node]:
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1]
            if nxt in component and nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError("a strongly connected component always has a cycle")


def _reachable(starts: list[str], successors: Mapping[str, list[str]]) -> set[str]:
    reached = set(starts)
    queue = deque(starts)
    while queue:
        for nxt in successors[queue.popleft()]:
            if nxt not in reached:
                reached.add(nxt)
                queue.append(nxt)
    return reached


def _validate(model: type[M], value: Any) -> tuple[M | None, list[ErrorDetails]]:
    try:
        return model.model_validate(value), []
    except ValidationError as exc:
        return None, exc.errors(include_url=False, include_context=False, include_input=False)


def _locate(root: Any, error: ErrorDetails) -> tuple[list[str | int], Any]:
    """The keys of an error's location that exist in ``root``, and the value there.

    Pydantic puts union member tags (``int``, ``list[int]``) in locations; they name no
    place in the data, so they are skipped. A missing key is kept: it is the place.
    """
    keys: list[str | int] = []
    value = root
    loc = error["loc"]
    for position, part in enumerate(loc):
        if _has(value, part):
            value = value[part]
        elif position == len(loc) - 1 and error["type"] == "missing":
            value = None
        else:
            continue
        keys.append(part)
    return keys, value


def _has(value: Any, key: str | int) -> bool:
    if isinstance(value, dict):
        return key in value
    return isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value)


def _field_problem(raw: Any, error: ErrorDetails, path: str, label: str) -> Problem:
    keys, _ = _locate(raw, error)
    where = json_path(path, *keys)
    name = json_path("", *keys)
    if error["type"] == "missing":
        return Problem(where, "missing_field", f"{label} needs the field `{name}`.")
    if error["type"] == "extra_forbidden":
        return Problem(where, "unknown_field", f"{label} has an unknown field `{name}`.")
    return Problem(where, "invalid_field", f"{label}: `{name}`: {_reason(error)}.")


def _reason(error: ErrorDetails) -> str:
    return error["msg"].removeprefix("Value error, ").rstrip(".")
