"""FLOW.LOOP: run a body sub-workflow for each item of a list, at most ``concurrency`` at
once; the output is the bodies' outputs in input order.

Each iteration is a child run keyed by this node run and the item's index, so an attempt
resumed after a crash finds the iterations that already finished instead of repeating
them. The body's trigger receives ``{"item", "index"}`` as its input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from loom.errors import LoomError
from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

MAX_ITEMS = 10_000


class LoopParameters(ParametersModel):
    items: list[Any] = Field(max_length=MAX_ITEMS, description="The list to iterate over.")
    concurrency: int = Field(default=5, ge=1, le=100)
    body: dict[str, Any] = Field(
        description="A workflow definition ({nodes, edges}) run once per item; its trigger "
        "outputs {item, index}."
    )


class LoopError(LoomError):
    code = "loop_failed"


async def execute(
    ctx: NodeContext, params: LoopParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    if ctx.children is None:
        raise LoopError(
            "FLOW.LOOP needs an engine that runs child workflows, and this one does not.",
            solution="Run this workflow on the local engine.",
        )
    children = ctx.children
    gate = asyncio.Semaphore(params.concurrency)

    async def one(index: int, item: Any) -> Any:
        async with gate:
            key = f"{ctx.node_run_id}:{index}"
            return await children.run_child({"item": item, "index": index}, key=key)

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(params.items)))
    return NodeResult(output=list(results))


SPEC = register(
    NodeSpec(
        type=NodeType.FLOW,
        subtype="LOOP",
        description="Runs `body` (a sub-workflow) for each of `items`, `concurrency` at a "
        "time; outputs the results in input order.",
        parameters=LoopParameters,
        execute=execute,
        deferred=frozenset({"body"}),
    )
)
