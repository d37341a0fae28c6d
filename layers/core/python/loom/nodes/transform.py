"""ACTION.TRANSFORM: shape data with JSONata; the evaluated ``value`` is the output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType


class TransformParameters(ParametersModel):
    value: Any = Field(
        description="Any JSON; strings holding {% JSONata %} are replaced by their results."
    )


async def execute(
    ctx: NodeContext, params: TransformParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    return NodeResult(output=params.value)


SPEC = register(
    NodeSpec(
        type=NodeType.ACTION,
        subtype="TRANSFORM",
        description="Builds its output from JSON with embedded JSONata expressions over "
        "$input, $nodes and $run.",
        parameters=TransformParameters,
        execute=execute,
    )
)
