"""One JSON call to a service's API through the outbound choke point (``loom.net``), and the
mapping of what it answered to an integration error.

The token travels only in the Authorization header; every quoted reason is redacted of it.
429 is retried here, honouring Retry-After within the HTTP node's budget: the service said
it did not act on the request. A 5xx is not, since a POST it answered may still have
created something; it fails retryable and the node's retry policy decides.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from loom.errors import InvalidInput
from loom.integrations.errors import (
    IntegrationAuthFailed,
    IntegrationError,
    IntegrationForbidden,
    IntegrationNotFound,
    IntegrationRateLimited,
    IntegrationUnavailable,
)
from loom.net import OutboundClient, OutboundResponse, parse_url
from loom.nodes.http_request import (
    MAX_ATTEMPTS,
    RETRY_BUDGET_SECONDS,
    redact_text,
    retry_delay,
)

MAX_RESPONSE_BYTES = 5 * 1024 * 1024
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class Service:
    name: str  # "GitHub"
    credential_type: str  # "github_token"
    credential_help: str  # what a working token is, for solutions


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any  # the JSON body; None when the body is not JSON
    where: str  # the URL without its query, for messages
    retry_after: float | None
    rate_limit_remaining: str | None


async def call_json(
    method: str,
    url: str,
    *,
    token: str,
    body: Any,
    headers: Mapping[str, str] | None = None,
    allowlist: Sequence[str] = (),
    timeout: float = 30,
) -> Answer:
    """Send ``body`` as JSON with ``Authorization: Bearer token``; read the JSON answer."""
    sent = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json",
        **(headers or {}),
    }
    content = json.dumps(body, separators=(",", ":")).encode()
    waited = 0.0
    async with OutboundClient(allowlist=allowlist) as client:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            response = await client.request(
                method,
                url,
                headers=sent,
                content=content,
                timeout=timeout,
                max_bytes=MAX_RESPONSE_BYTES,
            )
            if response.status != 429 or attempt == MAX_ATTEMPTS:
                break
            delay = retry_delay(response, attempt)
            if waited + delay > RETRY_BUDGET_SECONDS:
                break
            await asyncio.sleep(delay)
            waited += delay
    return _answer(response)


def _answer(response: OutboundResponse) -> Answer:
    try:
        data = json.loads(response.content) if response.content else None
    except ValueError:
        data = None
    retry_after = response.headers.get("retry-after")
    return Answer(
        status=response.status,
        data=data,
        where=parse_url(response.url).redacted,
        retry_after=retry_delay(response, 1) if retry_after else None,
        rate_limit_remaining=response.headers.get("x-ratelimit-remaining"),
    )


def excerpt(text: str, secret: str) -> str:
    """A service's reason for messages: one line, short, and never the token."""
    return redact_text(" ".join(text.split())[:MAX_REASON_CHARS], [secret])


def failure(
    service: Service,
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    not_found: str = "Check the ids in the node's parameters.",
) -> IntegrationError:
    """The error for a refusal that means what HTTP ``status`` means (Slack's error codes
    are mapped to one by the caller)."""
    details: dict[str, Any] = {"service": service.name, "status": status}
    if retry_after is not None:
        details["retry_after"] = retry_after
    if status == 401:
        return IntegrationAuthFailed(
            message,
            solution=f"The {service.credential_type} credential is invalid, revoked or "
            f"expired. Replace its token with {service.credential_help}.",
            details=details,
        )
    if status == 403:
        return IntegrationForbidden(
            message,
            solution=f"The token may not do this. Use {service.credential_help}.",
            details=details,
        )
    if status == 404:
        return IntegrationNotFound(message, solution=not_found, details=details)
    if status == 429:
        return IntegrationRateLimited(
            message,
            solution=f"{service.name} is limiting requests; the node's retry policy may try "
            "again later (give it a backoff of at least the retry_after seconds).",
            details=details,
        )
    if status >= 500:
        return IntegrationUnavailable(
            message,
            solution=f"{service.name} is failing; the node's retry policy may try again later.",
            details=details,
        )
    return IntegrationError(
        message,
        solution=f"Fix the parameters {service.name} refused, as its answer says.",
        details=details,
    )


def unexpected(service: Service, answer: Answer, missing: str) -> IntegrationError:
    """A success without the fields the service's API promises: likely a wrong base URL."""
    return IntegrationError(
        f"{answer.where} answered {answer.status} without {missing}: it does not look like "
        f"the {service.name} API.",
        solution=f"Check the node's base_url, or the configured {service.name} API URL.",
        details={"service": service.name, "status": answer.status},
    )


def join(base_url: str, *segments: str) -> str:
    """``base_url`` plus path segments, each percent-encoded, and none empty or a dot
    segment, so a parameter can neither climb (``..``) nor add a path of its own."""
    for part in segments:
        if part in ("", ".", ".."):
            raise InvalidInput(
                f"{part!r} cannot be part of an API path.",
                solution="Give the real name or id.",
            )
    return "/".join([base_url.rstrip("/"), *(quote(part, safe="") for part in segments)])
