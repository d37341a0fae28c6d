"""FLOW.SWITCH: leave by the port of the first case equal to ``value``, else ``default``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel, combined_input
from loom.nodes.registry import register
from loom.workflows.definition import NodeType

DEFAULT_PORT = "default"


class SwitchCase(ParametersModel):
    port: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    equals: Any = Field(description="The value that selects this case (JSON equality).")


class SwitchParameters(ParametersModel):
    value: Any = Field(description="The value to compare, usually a {% JSONata %} expression.")
    cases: list[SwitchCase] = Field(min_length=1, max_length=100)

    @field_validator("cases")
    @classmethod
    def _distinct_ports(cls, cases: list[SwitchCase]) -> list[SwitchCase]:
        ports = [c.port for c in cases]
        if len(set(ports)) != len(ports) or DEFAULT_PORT in ports:
            raise ValueError(f"case ports must be distinct and not '{DEFAULT_PORT}'")
        return cases


async def execute(
    ctx: NodeContext, params: SwitchParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    port = next((c.port for c in params.cases if c.equals == params.value), DEFAULT_PORT)
    return NodeResult(output=combined_input(inputs), port=port)


def ports(parameters: Mapping[str, Any]) -> tuple[str, ...]:
    cases = parameters.get("cases")
    names = [c.get("port") for c in cases if isinstance(c, dict)] if isinstance(cases, list) else []
    return (*[n for n in names if isinstance(n, str)], DEFAULT_PORT)


SPEC = register(
    NodeSpec(
        type=NodeType.FLOW,
        subtype="SWITCH",
        description="Routes its input to the port of the first case whose `equals` matches "
        "`value`, or to `default`; other branches are skipped.",
        parameters=SwitchParameters,
        execute=execute,
        outputs=(DEFAULT_PORT,),
        output_ports=ports,
    )
)
