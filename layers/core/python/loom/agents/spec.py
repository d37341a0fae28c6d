"""What an agent is: its spec, stored as JSON in an immutable version and shown as Markdown.

Tools reuse the TOOL nodes' parameters (HTTP_REQUEST, CODE, WORKFLOW, MCP), plus AGENT
(delegate to another agent of the workspace) and VECTOR_MEMORY. Each has a risk class that
governance reads (``tool_risk``); a spec may raise a tool's class, never lower it. The
graduation exam, a suite of cases, is part of the spec, so each version carries the exam
it must pass.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loom.agents.governance import Maturity, Risk
from loom.nodes.agent_memory import DEFAULT_EMBEDDING_MODEL, VectorMemory
from loom.nodes.agent_output import JsonOutput, TextOutput
from loom.nodes.agent_tools import (
    TOOL_NAME,
    CodeTool,
    HttpTool,
    McpTool,
    WorkflowTool,
    risk_of,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Risky(_Strict):
    risk: Risk | None = Field(
        default=None,
        description="Raise the tool's risk class (read < write < external < spend); a "
        "class below the tool's own is refused.",
    )


class HttpAgentTool(HttpTool, _Risky):
    type: Literal["HTTP_REQUEST"]


class CodeAgentTool(CodeTool, _Risky):
    type: Literal["CODE"]


class WorkflowAgentTool(WorkflowTool, _Risky):
    type: Literal["WORKFLOW"]


class McpAgentTool(McpTool, _Risky):
    type: Literal["MCP"]


class DelegateTool(_Risky):
    """Ask another agent: its own governance and budget apply to what it does."""

    type: Literal["AGENT"]
    agent_id: UUID
    name: str = Field(pattern=TOOL_NAME)
    description: str = Field(min_length=1, max_length=2000)


class VectorMemoryTool(VectorMemory, _Risky):
    type: Literal["VECTOR_MEMORY"]


AgentTool = Annotated[
    HttpAgentTool
    | CodeAgentTool
    | WorkflowAgentTool
    | McpAgentTool
    | DelegateTool
    | VectorMemoryTool,
    Field(discriminator="type"),
]


class Recall(_Strict):
    enabled: bool = True
    max_episodes: int = Field(default=3, ge=1, le=20)
    token_budget: int = Field(
        default=600, ge=50, le=8000, description="About 4 characters a token."
    )
    embedding_model: str = DEFAULT_EMBEDDING_MODEL


class Memory(_Strict):
    recent_messages: int = Field(
        default=20, ge=2, le=200, description="Chat messages shown verbatim."
    )
    summarize_over_tokens: int = Field(
        default=2000,
        ge=200,
        le=100_000,
        description="When a thread's unsummarized messages exceed this, the older ones "
        "are folded into its running summary.",
    )
    recall: Recall = Field(default_factory=Recall)


class Budget(_Strict):
    per_episode_usd: float | None = Field(default=None, gt=0)
    approval_timeout_seconds: int = Field(
        default=300,
        ge=10,
        le=86_400,
        description="How long a tool call waits for a person's approval before it is "
        "refused (within the node's own timeout).",
    )


class SchemaCriterion(_Strict):
    type: Literal["json_schema"]
    json_schema: dict[str, Any]


class ContainsCriterion(_Strict):
    type: Literal["contains"]
    text: str = Field(min_length=1)


class ExactCriterion(_Strict):
    type: Literal["exact"]
    text: str


class JudgeCriterion(_Strict):
    type: Literal["judge"]
    rubric: str = Field(min_length=1, max_length=5000)
    model: str | None = Field(default=None, description="Default: the agent's own model.")


Criterion = Annotated[
    SchemaCriterion | ContainsCriterion | ExactCriterion | JudgeCriterion,
    Field(discriminator="type"),
]

Stage = Literal["knowledge", "reasoning", "tool_use", "governance", "consistency"]


class ExamCase(_Strict):
    stage: Stage
    input: str = Field(min_length=1, max_length=20_000)
    criteria: list[Criterion] = Field(default_factory=list, max_length=10)
    expect_tools: list[str] = Field(
        default_factory=list, description="For tool_use: tools the agent should call."
    )
    forbid_tools: list[str] = Field(
        default_factory=list, description="For governance: tools it must not get to use."
    )


class Exam(_Strict):
    cases: list[ExamCase] = Field(default_factory=list, max_length=200)
    repeats: int = Field(default=3, ge=2, le=10, description="Runs per consistency case.")
    pass_score: float = Field(default=0.8, gt=0, le=1, description="Share to pass a stage.")


class AgentSpec(_Strict):
    role: str = Field(min_length=1, max_length=200, examples=["Support triage"])
    instructions: str = Field(default="", max_length=50_000)
    model: str = Field(min_length=3, max_length=200, examples=["openai/gpt-4o-mini"])
    fallbacks: list[str] = Field(default_factory=list, max_length=5)
    credential_id: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=64_000)
    max_steps: int = Field(default=8, ge=1, le=50)
    output: Annotated[TextOutput | JsonOutput, Field(discriminator="type")] = Field(
        default_factory=TextOutput
    )
    tools: list[AgentTool] = Field(default_factory=list, max_length=50)
    memory: Memory = Field(default_factory=Memory)
    budget: Budget = Field(default_factory=Budget)
    exam: Exam = Field(default_factory=Exam)

    @field_validator("tools")
    @classmethod
    def _unique_names(cls, tools: list[Any]) -> list[Any]:
        names = [n for t in tools for n in tool_names(t)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tool names must be unique: {', '.join(twice)}")
        return tools

    @model_validator(mode="after")
    def _risks_only_raised(self) -> AgentSpec:
        for tool in self.tools:
            own = tool_risk(tool)
            if tool.risk is not None and tool.risk.rank < own.rank:
                raise ValueError(
                    f"tool {tool_label(tool)} is a {own.value} tool; its risk may be "
                    f"raised, not lowered to {tool.risk.value}"
                )
        return self


def tool_names(tool: Any) -> list[str]:
    """The names the model calls a tool by (an MCP server's are known only when it runs)."""
    if isinstance(tool, VectorMemoryTool):
        names = [f"search_{tool.collection}"]
        return [*names, f"remember_{tool.collection}"] if tool.writable else names
    if isinstance(tool, McpAgentTool):
        return []
    return [tool.name]


def tool_label(tool: Any) -> str:
    if isinstance(tool, McpAgentTool):
        return f"MCP {tool.url}"
    if isinstance(tool, VectorMemoryTool):
        return f"VECTOR_MEMORY {tool.collection}"
    return str(tool.name)


def tool_risk(tool: Any, *, writes: bool = False) -> Risk:
    """The tool's own risk class (before a spec raises it), by the rule TOOL nodes follow
    (``agent_tools.risk_of``). ``writes``: the remember half of a vector memory."""
    if isinstance(tool, HttpAgentTool | CodeAgentTool | WorkflowAgentTool):
        return Risk(risk_of(tool))
    if isinstance(tool, McpAgentTool):
        return Risk.EXTERNAL  # per server tool, read-only hints are known only when it runs
    if isinstance(tool, DelegateTool):
        return Risk.SPEND
    return Risk.WRITE if writes else Risk.READ


def effective_risk(tool: Any, *, writes: bool = False) -> Risk:
    own = tool_risk(tool, writes=writes)
    raised: Risk | None = tool.risk
    return raised if raised is not None and raised.rank > own.rank else own


def render_markdown(
    name: str, description: str, version: int, maturity: Maturity, spec: AgentSpec
) -> str:
    """The spec as people read it."""
    lines = [f"# {name} (version {version})", ""]
    if description:
        lines += [description, ""]
    lines += [
        f"- **Role:** {spec.role}",
        f"- **Maturity:** {maturity.name}",
        f"- **Model:** `{spec.model}`"
        + (f" (then {', '.join(f'`{m}`' for m in spec.fallbacks)})" if spec.fallbacks else ""),
        f"- **Steps:** at most {spec.max_steps} model calls per episode",
    ]
    if spec.budget.per_episode_usd is not None:
        lines.append(f"- **Budget:** ${spec.budget.per_episode_usd:.4f} per episode")
    lines += ["", "## Instructions", "", spec.instructions or "_None._", "", "## Tools", ""]
    for tool in spec.tools:
        risk = effective_risk(tool, writes=True)
        about = getattr(tool, "description", "") or ""
        lines.append(f"- **{tool_label(tool)}** ({tool.type}, {risk.value}) {about}".rstrip())
    if not spec.tools:
        lines.append("_None._")
    recall = spec.memory.recall
    lines += [
        "",
        "## Memory",
        "",
        f"- Chat: the last {spec.memory.recent_messages} messages, older ones summarized",
        "- Recall: "
        + (
            f"up to {recall.max_episodes} past episodes within {recall.token_budget} tokens"
            if recall.enabled
            else "off"
        ),
        "",
        "## Graduation exam",
        "",
    ]
    for case in spec.exam.cases:
        criteria = ", ".join(c.type for c in case.criteria) or "tools only"
        lines.append(f"- {case.stage}: {json.dumps(case.input)[:80]} ({criteria})")
    if not spec.exam.cases:
        lines.append("_No cases: this agent cannot graduate until its spec has some._")
    return "\n".join(lines) + "\n"
