"""Drafting: ask the model for a definition, check it, send the problems back, repeat.

Each attempt streams through the LLM gateway with a JSON-Schema response format. The answer
must parse, match the schema, have its credentials and workflows checked against the
workspace (``gaps.mark``) and pass the validator every save uses; otherwise every problem
goes back to the model, up to ``repair_rounds`` times. Only a definition that validates
leaves this module; when none does, ``DraftFailed`` carries the last problems.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from loom.builder.answer import check_definition, draft_schema, parse_answer, response_format
from loom.builder.errors import DraftFailed
from loom.builder.gaps import mark
from loom.builder.grounding import repair_messages
from loom.builder.workspace import Resources
from loom.config import BuilderSettings
from loom.llm.calls import CallContext, StreamEnd, TextDelta
from loom.llm.gateway import LlmGateway

# How much of a failed answer a repair prompt repeats (a long one would crowd out the rest).
MAX_ECHOED_CHARS = 12_000


@dataclass(frozen=True)
class ModelChoice:
    model: str
    credential_id: str | None = None


@dataclass(frozen=True)
class Attempt:
    """The model is asked; round 0 is the first answer, round n the n-th repair."""

    round: int


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Repair:
    round: int
    problems: list[dict[str, str]]


@dataclass(frozen=True)
class Drafted:
    definition: dict[str, Any]
    explanation: str
    questions: list[str]
    gaps: list[dict[str, Any]]
    repair_rounds: int
    model: str
    notice: str | None = None
    cause: str | None = None


DraftEvent = Attempt | Delta | Repair | Drafted


async def draft(
    llm: LlmGateway,
    workspace_id: UUID,
    choice: ModelChoice,
    messages: list[dict[str, Any]],
    resources: Resources,
    settings: BuilderSettings,
    *,
    schema: dict[str, Any] | None = None,
) -> AsyncIterator[DraftEvent]:
    """Attempts, text deltas and repairs as they happen, then one ``Drafted``. ``schema``
    is the answer's JSON Schema (default: a draft's)."""
    schema = schema or draft_schema()
    call = CallContext(
        workspace_id=workspace_id, deadline_seconds=settings.builder_call_deadline_seconds
    )
    asked = messages
    problems: list[dict[str, str]] = []
    for round_ in range(settings.builder_repair_rounds + 1):
        yield Attempt(round_)
        text, model, notice = "", choice.model, None
        async for event in llm.stream(
            call,
            model=choice.model,
            messages=asked,
            response_format=response_format(schema, "workflow_draft"),
            temperature=0,
            max_tokens=settings.builder_max_tokens,
            credential_id=choice.credential_id,
        ):
            if isinstance(event, TextDelta):
                yield Delta(event.text)
            elif isinstance(event, StreamEnd):
                text, model = event.completion.text, event.completion.model
                notice = event.completion.notice
        drafted, problems = accept(text, schema, resources)
        if drafted is not None:
            yield Drafted(
                definition=drafted.definition,
                explanation=drafted.explanation,
                questions=drafted.questions,
                gaps=drafted.gaps,
                repair_rounds=round_,
                model=model,
                notice=notice,
                cause=drafted.cause,
            )
            return
        if round_ < settings.builder_repair_rounds:
            yield Repair(round_ + 1, problems)
            asked = repair_messages(messages, text[:MAX_ECHOED_CHARS], problems)
    rounds = settings.builder_repair_rounds
    raise DraftFailed(
        f"The model ({choice.model}) gave no workflow that validates, after {rounds} repair "
        f"round{'' if rounds == 1 else 's'}; nothing was changed.",
        solution="Describe the steps and the apps involved more concretely, or use a "
        "stronger model (`model` in the request, or LOOM_BUILDER_MODEL).",
        details=problems,
    )


def accept(
    text: str, schema: dict[str, Any], resources: Resources
) -> tuple[Drafted | None, list[dict[str, str]]]:
    """The answer as a draft (gaps marked, definition valid), or every problem in it."""
    value, problems = parse_answer(text, schema)
    if value is None:
        return None, problems
    marked = mark(value["definition"], resources, value["gaps"])
    definition, problems = check_definition(marked.definition)
    if definition is None:
        return None, problems
    questions = [q.strip() for q in value["questions"] if q.strip()]
    return (
        Drafted(
            definition=definition,
            explanation=value["explanation"].strip(),
            questions=[*questions, *marked.questions],
            gaps=marked.gaps,
            repair_rounds=0,
            model="",
            cause=value.get("cause"),
        ),
        [],
    )
