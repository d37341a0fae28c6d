"""The LLM gateway: every model call in Loom goes through ``LlmGateway``.

One call tries the model, then each fallback in order. Each model gets up to
``LOOM_LLM_MAX_ATTEMPTS`` attempts; only rate limits, timeouts and server errors are
retried, after a jittered exponential backoff or the provider's Retry-After. Before every
attempt the circuit breaker, the budgets and the rate limits are checked (a refused attempt
makes no request); after the call every attempt that reached a provider is recorded in
``llm_usage``. The whole call, retries and fallbacks included, ends by its deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from loom.config import LlmSettings, get_settings
from loom.db import Database
from loom.db.llm import Spend, UsageRow
from loom.llm import budget
from loom.llm._litellm import loaded
from loom.llm.admission import Admission
from loom.llm.breaker import CircuitBreaker
from loom.llm.calls import CallContext, Completion, StreamEnd, StreamEvent
from loom.llm.errors import (
    LlmCircuitOpen,
    LlmDeadlineExceeded,
    LlmError,
    LlmServerError,
    from_provider,
)
from loom.llm.replies import Answer, answer_of, deltas_of, partial_answer, vectors_of
from loom.llm.retry import Backoff
from loom.llm.targets import Keys, Target, provider_of
from loom.llm.usage import record_usage
from loom.secrets.vault import Vault

T = TypeVar("T")
Send = Callable[[Target], Awaitable[T]]


@dataclass
class _Call:
    """One gateway call in progress: its deadline, and what each attempt left."""

    context: CallContext
    started: float
    deadline: float
    rows: list[UsageRow] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    limits: budget.Limits | None = None
    spend: Spend | None = None
    embedding: bool = False

    @property
    def seconds(self) -> float:
        """The whole deadline, in seconds."""
        return self.deadline - self.started


class LlmGateway:
    def __init__(
        self,
        db: Database,
        *,
        settings: LlmSettings | None = None,
        vault: Vault | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        bucket_clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock``, ``sleep`` and ``jitter`` drive deadlines, backoff and the breaker;
        ``bucket_clock`` the rate-limit buckets (see ``Admission``). Tests replace them."""
        self._db = db
        self._settings = settings = settings or get_settings()
        self._keys = Keys(db, settings, vault, clock=clock)
        self._admission = Admission(db, settings, bucket_clock=bucket_clock)
        self._breaker = CircuitBreaker(
            failures=settings.llm_breaker_failures,
            reset_seconds=settings.llm_breaker_reset_seconds,
            clock=clock,
        )
        self._backoff = Backoff(settings.llm_backoff_seconds, settings.llm_backoff_max_seconds)
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter

    async def complete(
        self,
        call: CallContext,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        fallbacks: Sequence[str] = (),
        credential_id: str | None = None,
    ) -> Completion:
        """The model's answer, from ``model`` or the first fallback that gives one."""
        lib = await loaded()
        models = _checked([model, *fallbacks])
        state = self._begin(call)
        options = _options(tools, response_format, temperature, max_tokens)

        async def send(target: Target) -> Answer:
            response = await lib.acompletion(
                messages=messages, **options, **_route(target, state.seconds)
            )
            return answer_of(response, target.model)

        def estimate(target: Target) -> float:
            return budget.estimate(
                target.litellm_model, messages=messages, tools=tools, max_tokens=max_tokens
            )

        try:
            answer, target, started = await self._first_success(
                state, models, credential_id, estimate, send
            )
            state.rows.append(self._row(target, answer, started))
        finally:
            warnings = await self._record(state)
        return self._completion(state, target, answer, warnings)

    async def stream(
        self,
        call: CallContext,
        *,
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        fallbacks: Sequence[str] = (),
        credential_id: str | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Text and tool-call deltas as they arrive, then ``StreamEnd`` with the whole
        completion and its usage. Retries and fallbacks happen only before the first
        delta; a failure after it ends the stream with the error."""
        lib = await loaded()
        models = _checked([model, *fallbacks])
        state = self._begin(call)
        options = _options(tools, response_format, temperature, max_tokens)

        async def send(target: Target) -> tuple[AsyncIterator[Any], Any]:
            response = await lib.acompletion(
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                **options,
                **_route(target, state.seconds),
            )
            chunks = aiter(response)
            try:
                return chunks, await anext(chunks)
            except StopAsyncIteration:
                raise LlmServerError(
                    f"{target.model} answered with an empty stream.",
                    solution="Usually temporary; if it persists, check the provider.",
                ) from None

        def estimate(target: Target) -> float:
            return budget.estimate(
                target.litellm_model, messages=messages, tools=tools, max_tokens=max_tokens
            )

        opened: tuple[Target, float, AsyncIterator[Any]] | None = None
        received: list[Any] = []
        ending = "cancelled"  # the usage status if the stream stops before its end
        try:
            (chunks, first), target, started = await self._first_success(
                state, models, credential_id, estimate, send
            )
            received.append(first)
            opened = (target, started, chunks)
            for event in deltas_of(first):
                yield event
            async for chunk in self._rest(state, target, chunks):
                received.append(chunk)
                for event in deltas_of(chunk):
                    yield event
            answer = answer_of(lib.stream_chunk_builder(received, messages=messages), target.model)
            state.rows.append(self._row(target, answer, started))
            opened = None
            warnings = await self._record(state)
            yield StreamEnd(self._completion(state, target, answer, warnings))
        except LlmError as exc:
            ending = exc.code
            raise
        finally:
            if opened is not None:
                await self._close_partial(state, opened, received, messages, ending)
            if state.rows:
                await self._record(state)

    async def embed(
        self,
        call: CallContext,
        *,
        model: str,
        inputs: list[str],
        credential_id: str | None = None,
    ) -> list[list[float]]:
        """One vector per input, in order."""
        lib = await loaded()
        models = _checked([model])
        if not inputs:
            return []
        state = self._begin(call)
        state.embedding = True

        async def send(target: Target) -> tuple[list[list[float]], int]:
            response = await lib.aembedding(input=inputs, **_route(target, state.seconds))
            return vectors_of(response, len(inputs), target.model)

        def estimate(target: Target) -> float:
            return budget.estimate(target.litellm_model, texts=inputs)

        try:
            (vectors, tokens), target, started = await self._first_success(
                state, models, credential_id, estimate, send
            )
            state.rows.append(self._row(target, Answer("", [], "stop", tokens, 0), started))
        finally:
            await self._record(state)
        return vectors

    # -- the attempt loop ---------------------------------------------------------------

    def _begin(self, call: CallContext) -> _Call:
        now = self._clock()
        seconds = call.deadline_seconds or self._settings.llm_deadline_seconds
        return _Call(context=call, started=now, deadline=now + seconds)

    async def _first_success(
        self,
        state: _Call,
        models: list[str],
        credential_id: str | None,
        estimate: Callable[[Target], float],
        send: Send[T],
    ) -> tuple[T, Target, float]:
        """The first result of ``send`` from the models in order, with the target that gave
        it and when that attempt started; else the last model's error, the failures of
        every model in its details."""
        for index, model in enumerate(models):
            try:
                return await self._attempts(state, model, credential_id, estimate, send)
            except LlmError as exc:
                state.failures.append({"model": model, "code": exc.code, "message": exc.message})
                if not exc.falls_back or index == len(models) - 1:
                    if len(state.failures) > 1 and exc.details is None:
                        exc.details = {"failures": state.failures}
                    raise
        raise AssertionError("unreachable: the last model's error is raised")

    async def _attempts(
        self,
        state: _Call,
        model: str,
        credential_id: str | None,
        estimate: Callable[[Target], float],
        send: Send[T],
    ) -> tuple[T, Target, float]:
        attempt = 0
        while True:
            attempt += 1
            self._remaining(state, model)
            target = await self._keys.target(
                state.context.workspace_id, model, credential_id, embedding=state.embedding
            )
            admitted = self._breaker.admit(model)
            if admitted is None:
                raise LlmCircuitOpen(
                    f"{model} failed {self._settings.llm_breaker_failures} times in a row "
                    "and is resting; no request was sent.",
                    solution=f"A probe call may go in {self._breaker.retry_in(model):.0f} s. "
                    "Give the call a fallback model to keep working meanwhile.",
                    retry_after=self._breaker.retry_in(model),
                )
            healthy: bool | None = None
            try:
                state.limits, state.spend = await asyncio.to_thread(
                    self._admission.admit, state.context, target, partial(estimate, target)
                )
                remaining = self._remaining(state, model)
                started = self._clock()
                try:
                    async with asyncio.timeout(remaining):
                        result = await send(target)
                    healthy = True
                    return result, target, started
                except Exception as exc:
                    error = from_provider(
                        exc, model=model, key_source=target.key_source, secret=target.api_key
                    )
                    healthy = False if error.unhealthy else None
                    state.rows.append(self._failed_row(target, error, started))
            finally:
                self._breaker.record(admitted, healthy)
            await self._before_retry(state, error, attempt)

    async def _before_retry(self, state: _Call, error: LlmError, attempt: int) -> None:
        """Wait before the next attempt, or raise ``error`` when it is not worth one."""
        if not error.retryable or attempt >= self._settings.llm_max_attempts:
            raise error
        wait = self._backoff.delay(attempt, error.retry_after, self._jitter)
        if wait >= self._deadline_left(state):
            raise error
        await self._sleep(wait)

    async def _rest(
        self, state: _Call, target: Target, chunks: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        """The chunks after the first, each within the call's deadline."""
        while True:
            try:
                async with asyncio.timeout(self._remaining(state, target.model)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise from_provider(
                    exc, model=target.model, key_source=target.key_source, secret=target.api_key
                ) from None
            yield chunk

    async def _close_partial(
        self,
        state: _Call,
        opened: tuple[Target, float, AsyncIterator[Any]],
        received: list[Any],
        messages: list[dict[str, Any]],
        status: str,
    ) -> None:
        """A stream that failed or was dropped mid-way: close it, and keep a usage row for
        what it streamed so far (counted, as providers bill it) under ``status``."""
        target, started, chunks = opened
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
        partial = partial_answer(received, messages, target.litellm_model)
        state.rows.append(self._row(target, partial, started, status=status))

    def _remaining(self, state: _Call, model: str) -> float:
        left = self._deadline_left(state)
        if left <= 0:
            raise LlmDeadlineExceeded(
                f"The model call's deadline of {state.seconds:g} s passed (at {model}).",
                solution="Give the call a longer deadline (below the node's timeout), ask "
                "for less output, or use a faster model.",
            )
        return left

    def _deadline_left(self, state: _Call) -> float:
        return state.deadline - self._clock()

    # -- usage -------------------------------------------------------------------------

    def _row(
        self, target: Target, answer: Answer, started: float, *, status: str = "ok"
    ) -> UsageRow:
        return UsageRow(
            model=target.model,
            provider=target.provider,
            status=status,
            tokens_in=answer.tokens_in,
            tokens_out=answer.tokens_out,
            cost_usd=budget.cost(target.litellm_model, answer.tokens_in, answer.tokens_out),
            latency_ms=self._ms_since(started),
        )

    def _failed_row(self, target: Target, error: LlmError, started: float) -> UsageRow:
        return UsageRow(
            target.model, target.provider, error.code, 0, 0, 0.0, self._ms_since(started)
        )

    async def _record(self, state: _Call) -> list[str]:
        """Write the rows; the budget warnings the call's cost crossed."""
        rows, state.rows = state.rows, []
        month = await asyncio.to_thread(record_usage, self._db, state.context, rows)
        if month is None or state.limits is None or state.spend is None:
            return []
        spent = sum(row.cost_usd for row in rows)
        return budget.crossed(state.limits, state.spend, month, state.spend.run_usd + spent)

    def _completion(
        self, state: _Call, target: Target, answer: Answer, warnings: list[str]
    ) -> Completion:
        return Completion(
            text=answer.text,
            tool_calls=answer.tool_calls,
            finish_reason=answer.finish_reason,
            model=target.model,
            tokens_in=answer.tokens_in,
            tokens_out=answer.tokens_out,
            cost_usd=budget.cost(target.litellm_model, answer.tokens_in, answer.tokens_out),
            latency_ms=self._ms_since(state.started),
            warnings=warnings,
            notice=target.notice,
        )

    def _ms_since(self, started: float) -> int:
        return max(0, round((self._clock() - started) * 1000))


def _checked(models: list[str]) -> list[str]:
    for model in models:
        provider_of(model)
    return models


def _route(target: Target, timeout: float) -> dict[str, Any]:
    """Where litellm sends the request; its own retries are off (the gateway retries).

    ``timeout`` is the call's whole deadline, the same for every attempt: litellm caches
    its HTTP clients by timeout among others, and a new client per attempt would mean a
    new connection pool each time. The gateway cuts each attempt at what is left."""
    return {
        "model": target.litellm_model,
        "api_key": target.api_key,
        "api_base": target.api_base,
        "timeout": timeout,
        "num_retries": 0,
        "max_retries": 0,
    }


def _options(
    tools: list[dict[str, Any]] | None,
    response_format: dict[str, Any] | None,
    temperature: float | None,
    max_tokens: int | None,
) -> dict[str, Any]:
    given = {
        "tools": tools,
        "response_format": response_format,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    return {name: value for name, value in given.items() if value is not None}
