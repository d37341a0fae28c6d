"""Credential types: what each holds, with secret fields as ``SecretStr``.

Models forbid unknown fields and hide inputs in their errors, so neither a validation error
nor a repr can carry a submitted secret.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    StringConstraints,
    ValidationError,
)

from loom.errors import ValidationFailed

Text = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Secret = Annotated[SecretStr, StringConstraints(min_length=1, max_length=16_384)]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,128}$")]


class CredentialType(StrEnum):
    # Type names, not secrets.
    BEARER_TOKEN = "bearer_token"  # noqa: S105
    BASIC = "basic"
    API_KEY = "api_key"
    OAUTH2_CLIENT = "oauth2_client"
    SMTP = "smtp"
    SLACK_BOT = "slack_bot"
    GITHUB_TOKEN = "github_token"  # noqa: S105
    NOTION_TOKEN = "notion_token"  # noqa: S105
    WEBHOOK_SECRET = "webhook_secret"  # noqa: S105
    LLM_API_KEY = "llm_api_key"


class CredentialData(BaseModel):
    # A type's validator is built on its first use: a node resolves one type, not all.
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, defer_build=True
    )

    def reveal(self) -> dict[str, Any]:
        """The plain JSON form, secrets included: only for sealing."""
        plain = self.model_dump(mode="json", exclude_none=True)
        for name, value in self:
            if isinstance(value, SecretStr):
                plain[name] = value.get_secret_value()
        return plain

    def field_names(self) -> list[str]:
        return [name for name, value in self if value is not None]


class BearerToken(CredentialData):
    token: Secret


class Basic(CredentialData):
    username: Text
    password: Secret


class ApiKey(CredentialData):
    header: HeaderName = "X-API-Key"
    value: Secret


class OAuth2Client(CredentialData):
    # Any http(s) URL: the outbound HTTP choke point decides where Loom may connect.
    token_url: HttpUrl
    client_id: Text
    client_secret: Secret
    scope: Text | None = None
    audience: Text | None = None


class Smtp(CredentialData):
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)]
    port: int = Field(ge=1, le=65_535)
    username: Text | None = None
    password: Secret | None = None
    starttls: bool = True


class SlackBot(CredentialData):
    token: Secret


class GitHubToken(CredentialData):
    token: Secret


class NotionToken(CredentialData):
    token: Secret


class WebhookSecret(CredentialData):
    """A shared key for signing (``loom.signing``) what Loom sends to a receiver."""

    secret: Annotated[SecretStr, StringConstraints(min_length=16, max_length=1024)]


class LlmApiKey(CredentialData):
    """A workspace's own key for one model provider (bring your own key): the LLM gateway
    uses it for models named ``<provider>/...`` instead of the platform's key."""

    provider: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    api_key: Secret
    # An OpenAI-compatible proxy or a self-hosted endpoint; checked like any outbound URL.
    api_base: HttpUrl | None = None


MODELS: dict[CredentialType, type[CredentialData]] = {
    CredentialType.BEARER_TOKEN: BearerToken,
    CredentialType.BASIC: Basic,
    CredentialType.API_KEY: ApiKey,
    CredentialType.OAUTH2_CLIENT: OAuth2Client,
    CredentialType.SMTP: Smtp,
    CredentialType.SLACK_BOT: SlackBot,
    CredentialType.GITHUB_TOKEN: GitHubToken,
    CredentialType.NOTION_TOKEN: NotionToken,
    CredentialType.WEBHOOK_SECRET: WebhookSecret,
    CredentialType.LLM_API_KEY: LlmApiKey,
}


def parse_data(credential_type: CredentialType, data: Any, *, path: str = "data") -> CredentialData:
    """Validate ``data`` as ``credential_type``; problems name a path and say what is wrong,
    never what was sent."""
    try:
        return MODELS[credential_type].model_validate(data)
    except ValidationError as exc:
        problems = [
            {
                "path": ".".join([path, *(str(part) for part in error["loc"])]),
                "message": error["msg"],
            }
            for error in exc.errors(include_input=False, include_context=False, include_url=False)
        ]
        raise ValidationFailed(
            f"The {credential_type.value} credential has {len(problems)} invalid field(s).",
            solution="Fix every field listed in details and send it again.",
            details=problems,
        ) from None
