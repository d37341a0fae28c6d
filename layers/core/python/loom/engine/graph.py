"""A validated definition, indexed for the planner: edges by node, order, ancestors, specs.

Definitions are immutable once saved, so a ``Graph`` is built once per version and cached.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from uuid import UUID

from loom.db.async_database import AsyncConn
from loom.db.database import Conn
from loom.errors import LoomError
from loom.nodes.base import NodeSpec
from loom.nodes.registry import get_spec
from loom.workflows.definition import ATTACHMENT_TYPES, Edge, Node, WorkflowDefinition
from loom.workflows.versions import load_definition, read_definition


class UnknownNodeType(LoomError):
    code = "unknown_node_type"
    status = 422


@dataclass(frozen=True)
class Graph:
    definition: WorkflowDefinition
    nodes: dict[str, Node] = field(default_factory=dict)
    specs: dict[str, NodeSpec] = field(default_factory=dict)
    incoming: dict[str, list[Edge]] = field(default_factory=dict)
    outgoing: dict[str, list[Edge]] = field(default_factory=dict)
    order: tuple[str, ...] = ()
    # Per AI_AGENT node, the TOOL and MEMORY nodes attached to it. Attachments are not
    # steps: they are absent from ``nodes``, the edges and the order, so they never run
    # or gate anything by themselves.
    attached: dict[str, tuple[Node, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, definition: WorkflowDefinition) -> Graph:
        attachments = {n.id: n for n in definition.nodes if n.type in ATTACHMENT_TYPES}
        nodes = {n.id: n for n in definition.nodes if n.id not in attachments}
        specs: dict[str, NodeSpec] = {}
        for node in definition.nodes:
            spec = get_spec(node.type, node.subtype)
            if spec is None:
                raise UnknownNodeType(
                    f"Node '{node.id}' has unknown type {node.type}.{node.subtype}.",
                    solution="See GET /v1/nodes for the node types this Loom knows.",
                )
            if node.id in nodes:
                specs[node.id] = spec
        incoming: dict[str, list[Edge]] = defaultdict(list)
        outgoing: dict[str, list[Edge]] = defaultdict(list)
        attached: dict[str, list[Node]] = defaultdict(list)
        for edge in definition.edges:
            if edge.source in attachments:
                attached[edge.target].append(attachments[edge.source])
                continue
            incoming[edge.target].append(edge)
            outgoing[edge.source].append(edge)
        return cls(
            definition=definition,
            nodes=nodes,
            specs=specs,
            incoming={n: incoming.get(n, []) for n in nodes},
            outgoing={n: outgoing.get(n, []) for n in nodes},
            order=_topological(nodes, outgoing),
            attached={n: tuple(found) for n, found in attached.items()},
        )

    @cached_property
    def triggers(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if self.specs[n].kind == "trigger")

    @cached_property
    def position(self) -> dict[str, int]:
        return {node_id: index for index, node_id in enumerate(self.order)}

    @cached_property
    def leaves(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if not self.outgoing[n])

    @cached_property
    def ancestors(self) -> dict[str, frozenset[str]]:
        found: dict[str, frozenset[str]] = {}
        for node_id in self.order:
            above: set[str] = set()
            for edge in self.incoming[node_id]:
                above.add(edge.source)
                above |= found[edge.source]
            found[node_id] = frozenset(above)
        return found

    def descendants(self, node_id: str) -> frozenset[str]:
        return frozenset(n for n, above in self.ancestors.items() if node_id in above)

    def body(self, loop_path: list[str] | tuple[str, ...]) -> WorkflowDefinition:
        """The definition of a FLOW.LOOP body, by the loop node ids from the outside in."""
        definition = self.definition
        for node_id in loop_path:
            raw: Any = definition.node(node_id).parameters.get("body", {})
            definition = WorkflowDefinition.model_validate(
                {"name": f"{definition.name} / {node_id}", **raw}
            )
        return definition


_GraphKey = tuple[UUID, int, tuple[str, ...]]
_GRAPHS: OrderedDict[_GraphKey, Graph] = OrderedDict()
_GRAPHS_LIMIT = 256


def graph_for(
    conn: Conn, workflow_id: UUID, version: int, body_of: Sequence[str] | None = None
) -> Graph:
    """The graph of a pinned version (or of a FLOW.LOOP body inside it), built once per
    process: versions never change, so neither do their graphs."""
    key = _key(workflow_id, version, body_of)
    graph = _cached(key)
    if graph is None:
        graph = _remember(key, load_definition(conn, workflow_id, version))
    return graph


def cached_graph(
    workflow_id: UUID, version: int, body_of: Sequence[str] | None = None
) -> Graph | None:
    """What ``graph_for`` would answer without a query, if this process built it already."""
    return _cached(_key(workflow_id, version, body_of))


async def read_graph(conn: AsyncConn, workflow_id: UUID, version: int) -> Graph:
    """``graph_for`` a whole version, awaited (the API)."""
    key = _key(workflow_id, version)
    graph = _cached(key)
    if graph is None:
        graph = _remember(key, await read_definition(conn, workflow_id, version))
    return graph


def _key(workflow_id: UUID, version: int, body_of: Sequence[str] | None = None) -> _GraphKey:
    return (workflow_id, version, tuple(body_of or ()))


def _cached(key: _GraphKey) -> Graph | None:
    graph = _GRAPHS.get(key)
    if graph is not None:
        _GRAPHS.move_to_end(key)
    return graph


def _remember(key: _GraphKey, definition: WorkflowDefinition) -> Graph:
    graph = Graph.build(definition)
    if key[2]:
        graph = Graph.build(graph.body(list(key[2])))
    _GRAPHS[key] = graph
    if len(_GRAPHS) > _GRAPHS_LIMIT:
        _GRAPHS.popitem(last=False)
    return graph


def _topological(nodes: dict[str, Node], outgoing: dict[str, list[Edge]]) -> tuple[str, ...]:
    indegree = dict.fromkeys(nodes, 0)
    for edges in outgoing.values():
        for edge in edges:
            if edge.target in indegree:
                indegree[edge.target] += 1
    ready = deque(n for n in nodes if indegree[n] == 0)
    order: list[str] = []
    while ready:
        node_id = ready.popleft()
        order.append(node_id)
        for edge in outgoing.get(node_id, []):
            indegree[edge.target] -= 1
            if indegree[edge.target] == 0:
                ready.append(edge.target)
    if len(order) != len(nodes):
        raise LoomError(
            "The workflow has a cycle.", solution="Validate the definition to see where."
        )
    return tuple(order)
