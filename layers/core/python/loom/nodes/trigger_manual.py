"""TRIGGER.MANUAL: a run started by a person, the CLI or the API; outputs the run input."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from loom.nodes.base import NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.workflows.definition import NodeType


class ManualParameters(ParametersModel):
    sample_input: Any = Field(
        default=None, description="An example input, shown to people and used by dry runs."
    )


SPEC = register(
    NodeSpec(
        type=NodeType.TRIGGER,
        subtype="MANUAL",
        description="Starts a run on request (UI, CLI, API); its output is the run input.",
        parameters=ManualParameters,
        kind="trigger",
        inputs=(),
    )
)
