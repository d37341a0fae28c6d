"""FLOW.MERGE: join branches, waiting for all of them or taking the first to arrive.

The engine decides when a MERGE is ready (``mode``); the node only shapes the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType


class MergeParameters(ParametersModel):
    mode: Literal["wait_all", "first"] = Field(
        default="wait_all",
        description="wait_all: run when every incoming branch is resolved (skipped branches "
        "count as resolved); first: run as soon as one branch arrives.",
    )
    output: Literal["by_node", "list"] = Field(
        default="by_node",
        description="by_node: {node_id: output}; list: outputs in the order of the edges.",
    )


async def execute(
    ctx: NodeContext, params: MergeParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    if params.mode == "first":
        return NodeResult(output=next(iter(inputs.values()), None))
    if params.output == "list":
        return NodeResult(output=list(inputs.values()))
    return NodeResult(output=dict(inputs))


SPEC = register(
    NodeSpec(
        type=NodeType.FLOW,
        subtype="MERGE",
        description="Joins branches: waits for all (skipped ones count as done) or takes the "
        "first to arrive.",
        parameters=MergeParameters,
        execute=execute,
    )
)
