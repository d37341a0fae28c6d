"""Reading litellm's responses into Loom's types. A response of the wrong shape is the
provider's garbage: ``LlmServerError``, retried like any server failure."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loom.llm._litellm import litellm
from loom.llm.calls import TextDelta, ToolCall, ToolCallDelta
from loom.llm.errors import LlmServerError


@dataclass(frozen=True)
class Answer:
    text: str
    tool_calls: list[ToolCall]
    finish_reason: str
    tokens_in: int
    tokens_out: int


def answer_of(response: Any, model: str) -> Answer:
    try:
        choice = response.choices[0]
        message = choice.message
        calls = [
            ToolCall.parse(str(call.id), str(call.function.name), call.function.arguments or "")
            for call in (message.tool_calls or [])
        ]
        usage = getattr(response, "usage", None)
        return Answer(
            text=message.content or "",
            tool_calls=calls,
            finish_reason=str(choice.finish_reason or "stop"),
            tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
            tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
        )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise _garbage(model, "a chat completion", exc) from None


def deltas_of(chunk: Any) -> Iterator[TextDelta | ToolCallDelta]:
    """The text and tool-call pieces of one streamed chunk (usage chunks have none)."""
    for choice in getattr(chunk, "choices", None) or []:
        delta = choice.delta
        if delta.content:
            yield TextDelta(delta.content)
        for call in delta.tool_calls or []:
            function = call.function
            yield ToolCallDelta(
                index=int(call.index or 0),
                id=call.id,
                name=function.name if function else None,
                arguments=(function.arguments if function else None) or "",
            )


def partial_answer(chunks: list[Any], messages: list[dict[str, Any]], litellm_model: str) -> Answer:
    """What a stream cut short delivered, its tokens counted (providers bill them)."""
    deltas = [delta for chunk in chunks for delta in deltas_of(chunk)]
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    out = text + "".join(d.arguments for d in deltas if isinstance(d, ToolCallDelta))
    lib = litellm()
    return Answer(
        text=text,
        tool_calls=[],
        finish_reason="incomplete",
        tokens_in=int(lib.token_counter(model=litellm_model, messages=messages)),
        tokens_out=int(lib.token_counter(model=litellm_model, text=out)) if out else 0,
    )


def vectors_of(response: Any, expected: int, model: str) -> tuple[list[list[float]], int]:
    """The vectors in input order and the tokens they took."""
    try:
        items = sorted(response.data, key=lambda item: int(_get(item, "index")))
        vectors = [[float(x) for x in _get(item, "embedding")] for item in items]
        tokens = int(getattr(response.usage, "prompt_tokens", 0) or 0)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _garbage(model, "a list of embeddings", exc) from None
    if len(vectors) != expected:
        raise LlmServerError(
            f"{model} returned {len(vectors)} embeddings for {expected} inputs.",
            solution="Usually temporary; if it persists, check the provider or the api_base.",
        )
    return vectors, tokens


def _get(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def _garbage(model: str, expected: str, exc: Exception) -> LlmServerError:
    return LlmServerError(
        f"{model} answered something that is not {expected} "
        f"({type(exc).__name__}: {str(exc)[:200]}).",
        solution="Usually temporary; if it persists, check the provider or the api_base.",
    )
