"""FLOW.IF: leave by ``true`` or ``false``; the branch not taken is skipped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel, combined_input
from loom.nodes.registry import register
from loom.workflows.definition import NodeType


class IfParameters(ParametersModel):
    condition: Any = Field(
        description="Usually a {% JSONata %} expression; JSONata truthiness decides the port."
    )


def truthy(value: Any) -> bool:
    """JSONata's $boolean: empty strings, 0, null, empty objects and arrays whose members
    are all false are false."""
    if isinstance(value, list):
        return any(truthy(item) for item in value)
    if isinstance(value, dict):
        return bool(value)
    return bool(value)


async def execute(ctx: NodeContext, params: IfParameters, inputs: Mapping[str, Any]) -> NodeResult:
    port = "true" if truthy(params.condition) else "false"
    return NodeResult(output=combined_input(inputs), port=port)


SPEC = register(
    NodeSpec(
        type=NodeType.FLOW,
        subtype="IF",
        description="Routes its input to the `true` or `false` port; the other branch is skipped.",
        parameters=IfParameters,
        execute=execute,
        outputs=("true", "false"),
    )
)
