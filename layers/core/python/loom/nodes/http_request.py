"""ACTION.HTTP_REQUEST: call an HTTP API through the outbound choke point (``loom.net``).

Credentials are applied here and nowhere else: their values never reach the output, an
error or a log. In case a server echoes the request, every secret of 8 characters or more
(and every header value derived from one) is also redacted from the response headers, text
and JSON bodies and error excerpts it sends back (binary bodies are returned untouched).
429 and 5xx answers are retried inside the node attempt, honouring Retry-After, within a
small budget; anything longer is left to the node's retry policy.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import email.utils
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote_plus

import httpx
from pydantic import Field, SecretStr, field_validator

from loom.errors import InvalidInput, LoomError
from loom.net import InvalidOutboundResponse, OutboundClient, OutboundResponse, parse_url
from loom.nodes.base import NodeContext, NodeResult, NodeServices, NodeSpec, ParametersModel
from loom.nodes.registry import register
from loom.secrets.types import ApiKey, Basic, BearerToken, CredentialData, OAuth2Client
from loom.workflows.definition import NodeType

MB = 1024 * 1024
MAX_ATTEMPTS = 3
RETRY_BUDGET_SECONDS = 60.0
BACKOFF_SECONDS = 0.5
TOKEN_TIMEOUT_SECONDS = 30.0
TOKEN_MAX_BYTES = 1 * MB
# Secrets shorter than this are not redacted from bodies: they would match ordinary text.
MIN_REDACTED_LENGTH = 8
REDACTED = "[redacted]"
NEVER_ECHOED = frozenset({"authorization", "proxy-authorization"})

Scalar = str | int | float | bool
Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class JsonBody(ParametersModel):
    type: Literal["json"]
    value: Any = Field(description="Sent as application/json.")


class FormBody(ParametersModel):
    type: Literal["form"]
    value: dict[str, Scalar | list[Scalar]] = Field(
        description="Sent as application/x-www-form-urlencoded."
    )


class RawBody(ParametersModel):
    type: Literal["raw"]
    value: str = Field(description="Sent as is, UTF-8 encoded.")
    content_type: str = "text/plain; charset=utf-8"


class Auth(ParametersModel):
    credential_id: str = Field(
        min_length=1,
        description="A bearer_token, basic, api_key or oauth2_client credential of this workspace.",
    )


class HttpRequestParameters(ParametersModel):
    method: Method = Field(
        default="GET", description="TRACE and CONNECT are not offered: TRACE echoes credentials."
    )
    url: str = Field(description="An absolute http(s) URL.")
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="Added to the URL's query string."
    )
    body: Annotated[JsonBody | FormBody | RawBody, Field(discriminator="type")] | None = None
    auth: Auth | None = None
    timeout_seconds: float = Field(
        default=30, gt=0, le=300, description="For one request, redirects and body included."
    )
    max_response_bytes: int = Field(default=10 * MB, ge=1, le=100 * MB)
    response: Literal["auto", "json", "text", "binary"] = Field(
        default="auto",
        description="How to read the body; binary is base64. auto: JSON for JSON content "
        "types, text for text types, else base64.",
    )
    fail_on_status: bool = Field(
        default=True, description="Fail the node on 4xx and 5xx answers (after retries)."
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class HttpStatusError(LoomError):
    """The server answered 4xx: sending the same request again will not help."""

    code = "http_status"
    status = 502
    retryable = False


class HttpServerError(HttpStatusError):
    """429 or 5xx after the node's own retries: the node's retry policy may try later."""

    retryable = True


class OAuthTokenFailed(LoomError):
    """The token endpoint refused the client credentials."""

    code = "oauth_token_failed"
    status = 502
    retryable = False


class OAuthTokenUnavailable(OAuthTokenFailed):
    """The token endpoint answered 429 or 5xx: asking later may work."""

    retryable = True


@dataclass
class _Token:
    value: str
    fresh_until: float


class TokenCache:
    """OAuth2 access tokens per (workspace, credential, scope, audience), kept until shortly
    before they expire. The key includes a digest of the client secret, so a rotated
    credential never gets an old token."""

    DEFAULT_LIFETIME = 300.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[tuple[str, ...], _Token] = {}

    def get(self, key: tuple[str, ...]) -> str | None:
        token = self._tokens.get(key)
        if token is None or token.fresh_until <= self.clock():
            return None
        return token.value

    def put(self, key: tuple[str, ...], value: str, expires_in: float | None) -> None:
        now = self.clock()
        self._tokens = {k: t for k, t in self._tokens.items() if t.fresh_until > now}
        lifetime = self.DEFAULT_LIFETIME if expires_in is None else expires_in
        self._tokens[key] = _Token(value, now + lifetime - min(60.0, lifetime / 10))

    def drop(self, key: tuple[str, ...]) -> None:
        self._tokens.pop(key, None)


TOKENS = TokenCache()


@dataclass
class _Call:
    """One execution: the request as built, the credential, and what to redact."""

    ctx: NodeContext
    params: HttpRequestParameters
    client: OutboundClient
    credential: CredentialData | None
    secrets: set[str]

    async def send(self, token: str | None) -> OutboundResponse:
        params = self.params
        headers = dict(params.headers)
        content: bytes | None = None
        if isinstance(params.body, JsonBody):
            content = json.dumps(params.body.value, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(params.body, FormBody):
            content = _encoded_form(params.body.value).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif isinstance(params.body, RawBody):
            content = params.body.value.encode()
            headers.setdefault("Content-Type", params.body.content_type)
        if params.method in ("POST", "PATCH") and not _has(headers, "idempotency-key"):
            headers["Idempotency-Key"] = self.ctx.idempotency_key
        sensitive = self._authorise(headers, token)
        return await self.client.request(
            params.method,
            params.url,
            headers=headers,
            params=params.query,
            content=content,
            timeout=params.timeout_seconds,
            max_bytes=params.max_response_bytes,
            sensitive_headers=sensitive,
        )

    def _authorise(self, headers: dict[str, str], token: str | None) -> list[str]:
        """Add the credential's header; return the header names to drop cross-origin."""
        credential = self.credential
        if credential is None:
            return []
        if isinstance(credential, ApiKey):
            name, value = credential.header, credential.value.get_secret_value()
        elif isinstance(credential, Basic):
            pair = f"{credential.username}:{credential.password.get_secret_value()}"
            name, value = "Authorization", "Basic " + base64.b64encode(pair.encode()).decode()
        elif isinstance(credential, BearerToken):
            name, value = "Authorization", f"Bearer {credential.token.get_secret_value()}"
        else:
            assert token is not None
            name, value = "Authorization", f"Bearer {token}"
        if _has(headers, name):
            raise InvalidInput(
                f"Header '{name}' is set both in headers and by the auth credential.",
                solution=f"Remove '{name}' from headers.",
            )
        headers[name] = value
        self.secrets.update({value, value.partition(" ")[2]} - {""})
        return [name]


async def execute(
    ctx: NodeContext, params: HttpRequestParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    credential = await _credential(ctx.services, params.auth)
    allowlist = ctx.services.outbound_allowlist if ctx.services is not None else ()
    started = time.perf_counter()
    async with OutboundClient(allowlist=allowlist) as client:
        call = _Call(ctx, params, client, credential, _secrets_of(credential))
        response = await _with_retries(call)
    if params.fail_on_status and response.status >= 400:
        raise _status_error(params, response, call.secrets)
    output = {
        "status": response.status,
        "headers": _output_headers(response, call.secrets),
        "body": _redact_value(_read_body(params.response, response), call.secrets),
        "url": str(response.url),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return NodeResult(output=output)


async def _with_retries(call: _Call) -> OutboundResponse:
    """Send; on 429/5xx wait (Retry-After, else a short backoff) and send again, at most
    ``MAX_ATTEMPTS`` times within ``RETRY_BUDGET_SECONDS`` of waiting. An OAuth2 token the
    server rejects with 401 is fetched anew once."""
    waited = 0.0
    refreshed = False
    attempt = 1
    while True:
        token, cached = await _oauth_token(call)
        response = await call.send(token)
        if response.status == 401 and cached and not refreshed:
            TOKENS.drop(_token_key(call))
            refreshed = True
            continue
        if not _should_retry(response.status) or attempt >= MAX_ATTEMPTS:
            return response
        delay = retry_delay(response, attempt)
        if waited + delay > RETRY_BUDGET_SECONDS:
            return response
        await asyncio.sleep(delay)
        waited += delay
        attempt += 1


def _should_retry(status: int) -> bool:
    return status == 429 or status >= 500


def retry_delay(response: OutboundResponse, attempt: int) -> float:
    """Retry-After in seconds or as an HTTP date; without one, 0.5 s then 1 s."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return BACKOFF_SECONDS * 2.0 ** (attempt - 1)


async def _credential(services: NodeServices | None, auth: Auth | None) -> CredentialData | None:
    if auth is None:
        return None
    if services is None:
        raise InvalidInput(
            "This node has auth, but no credentials are available where it runs.",
            solution="Run the workflow on the Loom engine, which lends nodes their "
            "workspace's credentials.",
        )
    credential = await services.credential(auth.credential_id)
    if not isinstance(credential, BearerToken | Basic | ApiKey | OAuth2Client):
        raise InvalidInput(
            f"Credential {auth.credential_id} cannot authenticate HTTP requests.",
            solution="Use a bearer_token, basic, api_key or oauth2_client credential.",
        )
    return credential


def _secrets_of(credential: CredentialData | None) -> set[str]:
    if credential is None:
        return set()
    return {value.get_secret_value() for _, value in credential if isinstance(value, SecretStr)}


async def _oauth_token(call: _Call) -> tuple[str | None, bool]:
    """The access token to send and whether it came from the cache (None for other auth)."""
    credential = call.credential
    if not isinstance(credential, OAuth2Client):
        return None, False
    key = _token_key(call)
    cached = TOKENS.get(key)
    if cached is not None:
        call.secrets.add(cached)
        return cached, True
    form = {"grant_type": "client_credentials"}
    if credential.scope:
        form["scope"] = credential.scope
    if credential.audience:
        form["audience"] = credential.audience
    # RFC 6749 2.3.1: client id and secret are form-encoded, then sent as HTTP Basic.
    secret = credential.client_secret.get_secret_value()
    pair = f"{quote_plus(credential.client_id)}:{quote_plus(secret)}"
    basic = "Basic " + base64.b64encode(pair.encode()).decode()
    call.secrets.add(basic)
    token_url = str(credential.token_url)
    response = await call.client.request(
        "POST",
        token_url,
        headers={
            "Authorization": basic,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        content=_encoded_form(form).encode(),
        timeout=min(call.params.timeout_seconds, TOKEN_TIMEOUT_SECONDS),
        max_bytes=TOKEN_MAX_BYTES,
    )
    token, expires_in = _token_from(response, parse_url(token_url).redacted)
    call.secrets.add(token)
    TOKENS.put(key, token, expires_in)
    return token, False


def _token_key(call: _Call) -> tuple[str, ...]:
    credential = call.credential
    assert isinstance(credential, OAuth2Client) and call.params.auth is not None
    digest = hashlib.sha256(
        "\n".join(
            (
                str(credential.token_url),
                credential.client_id,
                credential.client_secret.get_secret_value(),
            )
        ).encode()
    ).hexdigest()
    return (
        str(call.ctx.workspace_id),
        call.params.auth.credential_id,
        credential.scope or "",
        credential.audience or "",
        digest,
    )


def _token_from(response: OutboundResponse, where: str) -> tuple[str, float | None]:
    """The access token and its lifetime from a token endpoint's answer. Only the OAuth
    ``error`` code is quoted back: descriptions are free text."""
    try:
        data = json.loads(response.content)
    except ValueError:
        data = None
    if response.status != 200 or not isinstance(data, dict):
        error = data.get("error") if isinstance(data, dict) else None
        code = (
            f" ({error})" if isinstance(error, str) and re.fullmatch(r"[\w.-]{1,64}", error) else ""
        )
        kind = OAuthTokenUnavailable if _should_retry(response.status) else OAuthTokenFailed
        raise kind(
            f"The token endpoint {where} answered {response.status}{code} instead of a token.",
            solution="Check the credential's token URL, client id, client secret and scope.",
        )
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise OAuthTokenFailed(
            f"The token endpoint {where} answered without an access_token.",
            solution="Check that the token URL is the OAuth2 token endpoint.",
        )
    # expires_in is optional (RFC 6749 5.1); without a usable one the cache's default
    # lifetime applies, and a 401 with the cached token fetches a new one anyway.
    expires_in = data.get("expires_in")
    try:
        lifetime = float(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        lifetime = None
    return token, lifetime


def _has(headers: Mapping[str, str], name: str) -> bool:
    return any(key.lower() == name.lower() for key in headers)


def _encoded_form(values: Mapping[str, Scalar | list[Scalar]]) -> str:
    return str(httpx.QueryParams(values))


def _read_body(mode: str, response: OutboundResponse) -> Any:
    content = response.content
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if mode == "auto":
        if not content:
            return None
        mode = "json" if _is_json(media) else "text" if _is_text(media) else "binary"
    if mode == "binary":
        return base64.b64encode(content).decode("ascii")
    if mode == "text":
        return content.decode(_charset(response.headers.get("content-type", "")), "replace")
    if not content:
        return None
    try:
        return json.loads(content, parse_constant=_no_constants)
    except ValueError:
        raise InvalidOutboundResponse(
            f"The response from {response.url.host} is not valid JSON.",
            solution='Set response to "text" or "binary" to read it as it is.',
        ) from None


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _is_text(media: str) -> bool:
    return (
        media.startswith("text/")
        or media.endswith("+xml")
        or media
        in ("application/xml", "application/javascript", "application/x-www-form-urlencoded")
    )


def _charset(content_type: str) -> str:
    match = re.search(r"charset=\"?([\w.:-]+)", content_type, re.IGNORECASE)
    if match:
        try:
            return codecs.lookup(match.group(1)).name
        except LookupError:
            pass
    return "utf-8"


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _output_headers(response: OutboundResponse, secrets: set[str]) -> dict[str, str | list[str]]:
    """Lower-cased; a repeated header (Set-Cookie) becomes a list; Authorization never."""
    out: dict[str, str | list[str]] = {}
    for name, value in response.headers.multi_items():
        key = name.lower()
        if key in NEVER_ECHOED:
            continue
        clean = redact_text(value, secrets)
        previous = out.get(key)
        if previous is None:
            out[key] = clean
        elif isinstance(previous, list):
            previous.append(clean)
        else:
            out[key] = [previous, clean]
    return out


def _redactable(secrets: Iterable[str]) -> list[str]:
    # Longest first, so a token is not half-replaced by a secret it contains.
    return sorted((s for s in secrets if len(s) >= MIN_REDACTED_LENGTH), key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str]) -> str:
    for secret in _redactable(secrets):
        text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any, secrets: set[str]) -> Any:
    if not _redactable(secrets):
        return value
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [_redact_value(item, secrets) for item in value]
    if isinstance(value, dict):
        return {
            redact_text(key, secrets): _redact_value(item, secrets) for key, item in value.items()
        }
    return value


def _status_error(
    params: HttpRequestParameters, response: OutboundResponse, secrets: set[str]
) -> HttpStatusError:
    excerpt = " ".join(response.content[:300].decode("utf-8", "replace").split())
    excerpt = redact_text(excerpt, secrets)
    where = parse_url(response.url).redacted
    message = f"{params.method} {where} answered {response.status} {response.reason}".rstrip()
    message += f": {excerpt}" if excerpt else "."
    details = {"status": response.status, "url": where}
    if _should_retry(response.status):
        return HttpServerError(
            message,
            solution="The server is failing or limiting requests; the node's retry policy "
            "may try again later. Set fail_on_status to false to handle the status instead.",
            details=details,
        )
    return HttpStatusError(
        message,
        solution="Check the URL, parameters and credential, or set fail_on_status to false "
        "to handle the status in the workflow.",
        details=details,
    )


SPEC = register(
    NodeSpec(
        type=NodeType.ACTION,
        subtype="HTTP_REQUEST",
        description="Calls an HTTP API (JSON, form or raw body; bearer, basic, API-key or "
        "OAuth2 client-credentials auth) through Loom's outbound checks, and outputs "
        "status, headers, body, final URL and elapsed time.",
        parameters=HttpRequestParameters,
        execute=execute,
        side_effects=True,
    )
)
