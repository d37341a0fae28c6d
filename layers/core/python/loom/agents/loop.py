"""The tool-calling loop every agent runs: the AI_AGENT node's inline agents, and governed
agents in chat, in nodes, in exams and as delegates.

The model may call tools for up to ``max_steps`` rounds; then its answer is shaped (text,
or JSON validated against a schema with one repair). Tool errors and invalid arguments go
back to the model as the tool's result so it can correct itself; a result is cut to
``MAX_TOOL_RESULT_CHARS``. A governed agent passes a ``Gate``: every call is put to it
before the tool runs, and a refusal goes back to the model with its reason, so no path
around governance exists.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from loom.errors import LoomError
from loom.llm.calls import Completion, ToolCall
from loom.nodes.agent_output import JsonOutput, TextOutput
from loom.nodes.agent_tools import Tool

MAX_TOOL_RESULT_CHARS = 16_000

Complete = Callable[[list[dict[str, Any]], list[Tool] | None, bool], Awaitable[Completion]]
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


class AgentFailed(LoomError):
    code = "agent_failed"
    retryable = False


class Gate(Protocol):
    async def admit(self, tool: Tool, call: ToolCall) -> str | None:
        """None to let the call run; otherwise why it may not, for the model and the user."""
        ...


@dataclass
class Tally:
    """What the agent did, for the output, the episode and the metadata."""

    steps: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    models: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def count(self, completion: Completion) -> None:
        self.steps += 1
        self.tokens_in += completion.tokens_in
        self.tokens_out += completion.tokens_out
        self.cost_usd += completion.cost_usd
        self.models.append(completion.model)
        self.warnings += completion.warnings
        if completion.notice and completion.notice not in self.notices:
            self.notices.append(completion.notice)

    def usage(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost_usd, 8),
        }


async def quiet(kind: str, data: dict[str, Any]) -> None:
    return None


class AgentLoop:
    def __init__(
        self,
        complete: Complete,
        *,
        who: str,
        max_steps: int,
        output: TextOutput | JsonOutput,
        gate: Gate | None = None,
        emit: Emit = quiet,
        budget_usd: float | None = None,
    ) -> None:
        """``complete(messages, tools, json_mode)`` makes one model call; ``who`` names the
        agent in messages; ``emit(kind, data)`` sees each tool call as it happens;
        ``budget_usd`` stops the loop once its calls have cost that much."""
        self._complete = complete
        self.who = who
        self.max_steps = max_steps
        self.output = output
        self.gate = gate
        self.emit = emit
        self.budget_usd = budget_usd
        self.tally = Tally()

    async def call(
        self, messages: list[dict[str, Any]], tools: list[Tool] | None, *, json_mode: bool
    ) -> Completion:
        if self.budget_usd is not None and self.tally.cost_usd >= self.budget_usd:
            raise AgentFailed(
                f"{self.who} spent ${self.tally.cost_usd:.6f} of its "
                f"${self.budget_usd:.6f} budget before finishing.",
                solution="Raise the budget, or make the task smaller.",
            )
        completion = await self._complete(messages, tools, json_mode)
        self.tally.count(completion)
        return completion

    async def answer(self, messages: list[dict[str, Any]], tools: list[Tool]) -> tuple[str, Any]:
        """Run the loop on ``messages`` (appended to as it goes): the answer's text, and its
        value (the text, or the JSON that matched the output schema)."""
        _check_unique(self.who, tools)
        final = await self._tool_loop(messages, tools)
        return final.text, await self._shaped(messages, final)

    async def _tool_loop(self, messages: list[dict[str, Any]], tools: list[Tool]) -> Completion:
        by_name = {t.name: t for t in tools}
        json_mode = not tools
        for _ in range(self.max_steps):
            completion = await self.call(messages, tools, json_mode=json_mode)
            if not completion.tool_calls:
                return completion
            messages.append(_assistant(completion))
            for call in completion.tool_calls:
                result = await self._use(by_name, call)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        raise AgentFailed(
            f"{self.who} did not finish within {self.max_steps} model calls "
            f"({len(self.tally.calls)} tool calls).",
            solution="Raise max_steps, or make the task or the tools simpler.",
        )

    async def _use(self, tools: dict[str, Tool], call: ToolCall) -> str:
        record: dict[str, Any] = {"tool": call.name, "arguments": call.arguments}
        self.tally.calls.append(record)
        await self.emit("tool_call", {"tool": call.name, "arguments": call.arguments})
        text = await self._result(tools, call, record)
        await self.emit("tool_result", {"tool": call.name, **_outcome(record)})
        return text

    async def _result(self, tools: dict[str, Tool], call: ToolCall, record: dict[str, Any]) -> str:
        tool = tools.get(call.name)
        if tool is None:
            record["error"] = "unknown tool"
            return _error(f"There is no tool named {call.name}; use one of: {', '.join(tools)}.")
        if call.invalid_arguments is not None:
            record["error"] = "arguments were not a JSON object"
            return _error("The arguments were not a JSON object; call the tool again.")
        if self.gate is not None:
            refusal = await self.gate.admit(tool, call)
            if refusal is not None:
                record["error"] = record["refused"] = refusal
                return _error(
                    f"Not allowed: {refusal} Do not try this tool again; answer "
                    "without it, and say what you could not do."
                )
        try:
            value = await tool.run(call.arguments)
        except LoomError as exc:
            record["error"] = exc.message
            return _error(f"{exc.message} {exc.solution}".strip())
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        record["ok"] = True
        if len(text) > MAX_TOOL_RESULT_CHARS:
            record["truncated_from"] = len(text)
            cut = len(text) - MAX_TOOL_RESULT_CHARS
            text = text[:MAX_TOOL_RESULT_CHARS] + f"\n[... {cut} more characters cut]"
        return text

    async def _shaped(self, messages: list[dict[str, Any]], answer: Completion) -> Any:
        output = self.output
        if not isinstance(output, JsonOutput):
            return answer.text
        value, problem = parse_json_answer(answer.text, output.json_schema)
        if problem is None:
            return value
        messages.append({"role": "assistant", "content": answer.text})
        messages.append(
            {
                "role": "user",
                "content": f"That answer is not valid: {problem}. Reply with only a JSON value "
                f"that matches this JSON Schema: {json.dumps(output.json_schema)}",
            }
        )
        repaired = await self.call(messages, None, json_mode=True)
        value, problem = parse_json_answer(repaired.text, output.json_schema)
        if problem is not None:
            raise AgentFailed(
                f"The model's answer did not match the output schema, even after one repair: "
                f"{problem}.",
                solution="Simplify the schema, describe it in the prompt, or use a stronger model.",
            )
        return value


def response_format(output: TextOutput | JsonOutput, json_mode: bool) -> dict[str, Any] | None:
    """What to ask the provider for: a JSON-schema answer when one is wanted and no tools
    are on offer (a tool round cannot be constrained to the answer's schema)."""
    if json_mode and isinstance(output, JsonOutput):
        return {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": output.json_schema},
        }
    return None


def first_cause(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first Loom error inside (nested) exception groups, else the group itself."""
    for inner in group.exceptions:
        if isinstance(inner, LoomError):
            return inner
        if isinstance(inner, BaseExceptionGroup):
            found = first_cause(inner)
            if found is not inner:
                return found
    return group


def _check_unique(who: str, tools: list[Tool]) -> None:
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AgentFailed(
            f"{who} has tools with the same name: {', '.join(duplicates)}.",
            solution="Rename them, or give MCP tools a prefix.",
        )


def _outcome(record: dict[str, Any]) -> dict[str, Any]:
    if "refused" in record:
        return {"ok": False, "refused": record["refused"]}
    if "error" in record:
        return {"ok": False, "error": record["error"]}
    return {"ok": True}


def _assistant(completion: Completion) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": completion.text or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.invalid_arguments or json.dumps(call.arguments),
                },
            }
            for call in completion.tool_calls
        ],
    }


def _error(message: str) -> str:
    return json.dumps({"error": message})


def parse_json_answer(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """The JSON value in ``text`` if it matches ``schema``; else what is wrong with it."""
    try:
        value = json.loads(_unfenced(text))
    except json.JSONDecodeError as exc:
        return None, f"it is not JSON ({exc.msg} at character {exc.pos})"
    errors = list(Draft202012Validator(schema).iter_errors(value))
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "the answer"
        return None, f"{where}: {errors[0].message}"
    return value, None


def _unfenced(text: str) -> str:
    """Small models wrap JSON in a Markdown fence despite being asked not to."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped.strip()
