"""ACTION.CODE: run the user's ``def main(inputs): ...`` isolated, output its return value.

``main`` gets ``{"input": <the run input>, "nodes": {<upstream node id>: <its output>}}``
and must return JSON. ``code`` is deferred: the engine never evaluates ``{% %}`` inside
it. It is compiled (never run) when the parameters are validated, so a syntax error is
reported on save and before any process starts. Where it runs is ``RUNNER``: locally a
separate, limited process (``loom.sandbox``); on AWS its own Lambda without permissions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.sandbox import CodeInvalid, CodeRunner, Limits, LocalProcessRunner, check_syntax
from loom.workflows.definition import NodeType

MAX_CODE_BYTES = 100 * 1024
MIB = 1024 * 1024

RUNNER: CodeRunner = LocalProcessRunner()


class CodeParameters(ParametersModel):
    code: str = Field(
        min_length=1,
        description="Python source defining def main(inputs): ... that returns JSON. "
        "inputs is {input: the run input, nodes: outputs of upstream nodes by id}. "
        "Only some pure standard-library modules can be imported.",
    )
    timeout_seconds: float = Field(
        default=10, gt=0, le=300, description="Wall-clock (and CPU) limit of one execution."
    )
    memory_mb: int = Field(
        default=256, ge=64, le=2048, description="Address-space limit of the process, in MB."
    )

    @field_validator("code")
    @classmethod
    def _compiles(cls, code: str) -> str:
        if len(code.encode()) > MAX_CODE_BYTES:
            raise ValueError(f"code is larger than {MAX_CODE_BYTES // 1024} KB")
        try:
            check_syntax(code)
        except CodeInvalid as exc:
            raise ValueError(exc.message) from None
        return code


async def execute(
    ctx: NodeContext, params: CodeParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    limits = Limits(timeout_seconds=params.timeout_seconds, memory_bytes=params.memory_mb * MIB)
    arguments = {"input": ctx.run_input, "nodes": dict(inputs)}
    result = await RUNNER.run(params.code, arguments, limits)
    metadata: dict[str, Any] = {"duration_ms": round(result.duration_ms, 1)}
    if result.logs:
        metadata["logs"] = result.logs
    return NodeResult(output=result.value, metadata=metadata)


SPEC = register(
    NodeSpec(
        type=NodeType.ACTION,
        subtype="CODE",
        description="Runs Python `def main(inputs)` in an isolated process with CPU, memory "
        "and time limits; its return value is the output.",
        parameters=CodeParameters,
        execute=execute,
        deferred=frozenset({"code"}),
    )
)
