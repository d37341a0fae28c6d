"""``/v1/auth``: sign up, sign in, refresh, sign out, and who am I."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from loom.api.deps import CurrentPrincipal, DatabaseDep, SettingsDep
from loom.auth import service
from loom.auth.service import MAX_EMAIL_LENGTH, TokenPair, normalize_email

router = APIRouter(prefix="/v1/auth", tags=["auth"])

MAX_NAME_LENGTH = 200


def _encodable(value: str) -> str:
    """JSON may carry lone surrogates, which no UTF-8 hash or column can take."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _plain_text(value: str) -> str:
    """Names shown to people: no control characters (Postgres text can't even hold NUL)."""
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValueError("must not contain control characters or lone surrogates")
    return value


EmailAddress = Annotated[str, Field(max_length=MAX_EMAIL_LENGTH), AfterValidator(normalize_email)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(_plain_text),
]
NewPassword = Annotated[str, Field(min_length=10, max_length=1024), AfterValidator(_encodable)]
Password = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_encodable)]
OpaqueToken = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_encodable)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignupRequest(_Request):
    email: EmailAddress
    password: NewPassword
    workspace_name: Name


class LoginRequest(_Request):
    email: EmailAddress
    password: Password
    workspace_id: UUID | None = Field(
        default=None, description="Sign in to this workspace; default: your oldest membership."
    )


class RefreshRequest(_Request):
    refresh_token: OpaqueToken


class LogoutRequest(_Request):
    refresh_token: OpaqueToken


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name
    expires_in: int = Field(description="Seconds until the access token expires.")
    user_id: UUID
    workspace_id: UUID

    @classmethod
    def of(cls, pair: TokenPair) -> TokenPairOut:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
            user_id=pair.user_id,
            workspace_id=pair.workspace_id,
        )


class MeOut(BaseModel):
    kind: Literal["user", "api_key"]
    workspace_id: UUID
    user_id: UUID | None
    email: str | None
    role: str | None
    key_id: UUID | None
    scopes: list[str]


def no_store(response: Response) -> None:
    """Credentials in a body must not be cached by anything on the way (RFC 6749 5.1)."""
    response.headers["Cache-Control"] = "no-store"


@router.post("/signup", status_code=201, response_model=TokenPairOut)
def handle_signup(
    body: SignupRequest, db: DatabaseDep, settings: SettingsDep, response: Response
) -> TokenPairOut:
    no_store(response)
    pair = service.signup(
        db,
        settings,
        email=body.email,
        password=body.password,
        workspace_name=body.workspace_name,
    )
    return TokenPairOut.of(pair)


@router.post("/login", response_model=TokenPairOut)
def handle_login(
    body: LoginRequest, db: DatabaseDep, settings: SettingsDep, response: Response
) -> TokenPairOut:
    no_store(response)
    pair = service.login(
        db, settings, email=body.email, password=body.password, workspace_id=body.workspace_id
    )
    return TokenPairOut.of(pair)


@router.post("/refresh", response_model=TokenPairOut)
def handle_refresh(
    body: RefreshRequest, db: DatabaseDep, settings: SettingsDep, response: Response
) -> TokenPairOut:
    no_store(response)
    return TokenPairOut.of(service.refresh_session(db, settings, body.refresh_token))


@router.post("/logout", status_code=204)
def handle_logout(body: LogoutRequest, db: DatabaseDep) -> Response:
    service.logout(db, body.refresh_token)
    return Response(status_code=204)


@router.get("/me", response_model=MeOut)
def handle_get_me(db: DatabaseDep, principal: CurrentPrincipal) -> MeOut:
    return MeOut.model_validate(service.describe_principal(db, principal))
