"""FLOW.FILTER: keep the items of a list for which ``condition`` holds.

``condition`` is deferred: it is evaluated once per item with ``$item`` and ``$index``
bound, besides ``$input``, ``$nodes`` and ``$run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from loom.expressions import ExpressionContext, evaluate
from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

MAX_ITEMS = 100_000


class FilterParameters(ParametersModel):
    items: list[Any] = Field(max_length=MAX_ITEMS, description="The list to filter.")
    condition: str = Field(
        description="A {% JSONata %} expression over $item and $index; true keeps the item."
    )


async def execute(
    ctx: NodeContext, params: FilterParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    kept = []
    where = f"nodes.{ctx.node_id}.parameters.condition"
    for index, item in enumerate(params.items):
        scope = ExpressionContext(
            input=ctx.run_input,
            nodes=ctx.upstream,
            run=ctx.run,
            variables={"item": item, "index": index},
        )
        if evaluate(params.condition, scope, where=where):
            kept.append(item)
    return NodeResult(output=kept)


SPEC = register(
    NodeSpec(
        type=NodeType.FLOW,
        subtype="FILTER",
        description="Outputs the items of `items` for which `condition` (over $item, $index) "
        "is true, in order.",
        parameters=FilterParameters,
        execute=execute,
        deferred=frozenset({"condition"}),
    )
)
