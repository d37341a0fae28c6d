"""litellm's exceptions map onto Loom's error classes in one place, with the right
retryable flag, a solution, and no key in the message."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from loom.llm._litellm import litellm
from loom.llm.errors import LlmError, LlmTimeout, from_provider

MODEL = "openai/gpt-4o-mini"
SECRET = "sk-live-abcdef0123456789"


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://api.example.com/v1/chat/completions")
    return httpx.Response(status, headers=headers, request=request)


def _map(exc: BaseException) -> LlmError:
    return from_provider(exc, model=MODEL, key_source="the platform key", secret=SECRET)


ARGS = {"llm_provider": "openai", "model": "gpt-4o-mini"}
CASES: list[tuple[Callable[[Any], BaseException], str, bool]] = [
    (
        lambda lib: lib.RateLimitError("slow", **ARGS, response=_response(429)),
        "llm_rate_limit",
        True,
    ),
    (
        lambda lib: lib.RateLimitError(
            "You exceeded your current quota", **ARGS, response=_response(429)
        ),
        "llm_quota_exceeded",
        False,
    ),
    (lambda lib: lib.AuthenticationError("no", **ARGS, response=_response(401)), "llm_auth", False),
    (
        lambda lib: lib.ContextWindowExceededError("long", **ARGS, response=_response(400)),
        "llm_context_length",
        False,
    ),
    (
        lambda lib: lib.BadRequestError("bad tool", **ARGS, response=_response(400)),
        "llm_bad_request",
        False,
    ),
    (
        lambda lib: lib.NotFoundError("no such", **ARGS, response=_response(404)),
        "llm_model_unknown",
        False,
    ),
    (
        lambda lib: lib.InternalServerError("boom", **ARGS, response=_response(500)),
        "llm_server",
        True,
    ),
    (lambda lib: lib.APIConnectionError("reset", **ARGS), "llm_server", True),
    (lambda lib: lib.Timeout("slow", **ARGS), "llm_timeout", True),
    (lambda lib: TimeoutError(), "llm_timeout", True),
    (lambda lib: RuntimeError("surprise"), "llm_internal", False),
]


@pytest.mark.parametrize(("make", "code", "retryable"), CASES)
def test_each_kind_maps_to_its_class(
    make: Callable[[Any], BaseException], code: str, retryable: bool
) -> None:
    error = _map(make(litellm()))
    assert (error.code, error.retryable) == (code, retryable)
    assert error.message and error.solution


def test_retry_after_is_read_from_the_provider_headers() -> None:
    lib = litellm()
    exc = lib.RateLimitError(
        "slow down",
        llm_provider="openai",
        model="gpt-4o-mini",
        response=_response(429, {"retry-after": "12"}),
    )
    assert _map(exc).retry_after == 12.0


def test_the_key_never_reaches_a_message() -> None:
    lib = litellm()
    args = {"llm_provider": "openai", "model": "gpt-4o-mini", "response": _response(400)}
    leaky = lib.BadRequestError(f"Invalid request with key {SECRET}", **args)
    error = _map(leaky)
    assert SECRET not in error.message and "[redacted]" in error.message
    auth = _map(lib.AuthenticationError(f"Incorrect API key {SECRET[:10]}...", **args))
    assert SECRET[:10] not in error.message + auth.message


def test_loom_errors_pass_through_and_long_messages_are_cut() -> None:
    own = LlmTimeout("already mapped")
    assert _map(own) is own
    long = _map(RuntimeError("x" * 5000))
    assert len(long.message) < 500
