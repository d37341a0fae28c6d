"""What a model call can fail with, whether trying again may help, and what to do about it.

``from_provider`` is the one place that maps litellm's exceptions onto these classes.
Provider messages are quoted cut short and with the key redacted; an auth failure never
quotes the provider (some echo part of the key).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from loom.errors import LoomError
from loom.llm._litellm import litellm

_MAX_QUOTED = 300
_LITELLM_PREFIX = re.compile(r"^(litellm\.\w+:\s*)+(\w+Error:\s*)?(\w+Exception\s*-\s*)?")


class LlmError(LoomError):
    """Something inside the gateway went wrong: a bug, not the provider or the request."""

    code = "llm_internal"
    status = 502
    retryable = False
    # Whether the next model of a fallback list may still be tried.
    falls_back: ClassVar[bool] = True
    # Whether this says the model is unhealthy (counts towards its circuit breaker).
    unhealthy: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        solution: str = "",
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, solution=solution, details=details)
        self.retry_after = retry_after


class LlmRateLimited(LlmError):
    """Too many calls: the provider's 429, or one of Loom's own buckets."""

    code = "llm_rate_limit"
    status = 429
    retryable = True


class LlmWorkspaceRateLimited(LlmRateLimited):
    """The workspace's own bucket is empty: no other model would be allowed either."""

    falls_back = False


class LlmQuotaExceeded(LlmError):
    """The provider account is out of credit or quota: a 429 that waiting does not fix."""

    code = "llm_quota_exceeded"
    status = 402


class LlmTimeout(LlmError):
    code = "llm_timeout"
    status = 504
    retryable = True
    unhealthy = True


class LlmDeadlineExceeded(LlmTimeout):
    """The call's whole deadline is spent: no time is left for a retry or a fallback."""

    retryable = False
    falls_back = False
    unhealthy = False


class LlmContextLength(LlmError):
    code = "llm_context_length"
    status = 400


class LlmAuthFailed(LlmError):
    code = "llm_auth"
    status = 502


class LlmKeyMissing(LlmAuthFailed):
    """No key for the provider: neither the workspace nor the platform has one."""

    code = "llm_key_missing"


class LlmServerError(LlmError):
    """The provider failed (5xx, a dropped connection) or answered something unreadable."""

    code = "llm_server"
    retryable = True
    unhealthy = True


class LlmBadRequest(LlmError):
    """The provider refused the request as sent (400, 422): parameters, content policy."""

    code = "llm_bad_request"
    status = 400


class LlmModelUnknown(LlmError):
    code = "llm_model_unknown"
    status = 400


class LlmModelUnavailable(LlmError):
    """The model cannot be served here (the local model stack is not installed)."""

    code = "llm_model_unavailable"
    status = 503


class LlmCircuitOpen(LlmError):
    """Recent calls to this model failed; it is given a rest before a probe tries again."""

    code = "llm_circuit_open"
    status = 503
    retryable = True


class LlmBudgetExceeded(LlmError):
    code = "llm_budget_exceeded"
    status = 402
    falls_back = False


def from_provider(exc: BaseException, *, model: str, key_source: str, secret: str) -> LlmError:
    """The Loom error for what litellm (or the transport under it) raised calling ``model``.

    ``key_source`` says where the key came from, for auth messages; ``secret`` is the key
    itself, removed from anything quoted."""
    if isinstance(exc, LlmError):
        return exc
    lib = litellm()
    said = _quoted(exc, secret)
    if isinstance(exc, TimeoutError | lib.Timeout):
        return LlmTimeout(
            f"{model} did not answer in time.",
            solution="Try again later, use a faster model, or give the call a longer deadline.",
        )
    if isinstance(exc, lib.ContextWindowExceededError):
        return LlmContextLength(
            f"The prompt is longer than {model} accepts: {said}",
            solution="Shorten the messages or tool results, or use a model with a larger "
            "context window (a fallback with more context is tried next if one is given).",
        )
    if isinstance(exc, lib.AuthenticationError | lib.PermissionDeniedError):
        status = getattr(exc, "status_code", None)
        return LlmAuthFailed(
            f"The provider refused the API key for {model} ({status}).",
            solution=f"Check {key_source}: the key may be wrong, revoked, or lack access "
            "to this model.",
        )
    if isinstance(exc, lib.RateLimitError):
        return _rate_limited(exc, model, said)
    if isinstance(exc, lib.NotFoundError):
        return LlmModelUnknown(
            f"The provider does not know {model}: {said}",
            solution="Check the model name (provider/model, as litellm names it).",
        )
    if isinstance(exc, lib.BadRequestError | lib.UnprocessableEntityError):
        return LlmBadRequest(
            f"{model} refused the request: {said}",
            solution="Check the parameters this model supports (tools, response format, "
            "temperature) and the content of the messages.",
        )
    if isinstance(exc, _server_errors(lib)):
        return LlmServerError(
            f"{model} failed or answered something unreadable: {said}",
            solution="Usually temporary: the call is retried, then the fallbacks are tried. "
            "If it persists, check the provider's status or the api_base.",
        )
    return LlmError(
        f"Calling {model} failed unexpectedly: {type(exc).__name__}: {said}",
        solution="This is a bug in Loom or litellm; report it with the message.",
    )


def _server_errors(lib: Any) -> tuple[type[BaseException], ...]:
    # litellm's classes derive from openai's, not from litellm.APIError: name each one.
    return (
        lib.InternalServerError,
        lib.ServiceUnavailableError,
        lib.BadGatewayError,
        lib.APIConnectionError,
        lib.APIResponseValidationError,
        lib.APIError,
    )


def _rate_limited(exc: BaseException, model: str, said: str) -> LlmError:
    body = getattr(exc, "body", None)
    kind = {str(body.get("type")), str(body.get("code"))} if isinstance(body, dict) else set()
    if "insufficient_quota" in kind or "quota" in said.lower():
        return LlmQuotaExceeded(
            f"The provider account behind {model} is out of quota: {said}",
            solution="Add credit or raise the quota with the provider, or use another key.",
        )
    return LlmRateLimited(
        f"{model} is rate limited by the provider: {said}",
        solution="Calls are retried after Retry-After; if this persists, lower the call "
        "rate or raise the limit with the provider.",
        retry_after=_retry_after(exc),
    )


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "litellm_response_headers", None)
    response = getattr(exc, "response", None)
    for source in (headers, getattr(response, "headers", None)):
        value = source.get("retry-after") if source is not None else None
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            return None  # an HTTP date: rare from model providers; backoff applies
    return None


def _quoted(exc: BaseException, secret: str) -> str:
    text = str(getattr(exc, "message", None) or exc or type(exc).__name__)
    text = _LITELLM_PREFIX.sub("", text).strip()
    if secret:
        text = text.replace(secret, "[redacted]")
    if len(text) > _MAX_QUOTED:
        text = text[:_MAX_QUOTED] + "..."
    return text
