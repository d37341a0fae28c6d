"""Settings: the only place in Loom that reads the environment.

One pydantic-settings model, validated when first asked for (never at import time), built
from small mixins so a Lambda function validates only what it needs at cold start.
Every field is documented in ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from loom.errors import ConfigError


class _Base(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOOM_", extra="ignore", populate_by_name=True, frozen=True
    )


class ObservabilitySettings(_Base):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of every Loom logger."
    )


class DatabaseSettings(_Base):
    database_url: str | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description=(
            "Postgres URL of a role that owns the schema and runs migrations. Unset: the "
            "embedded Postgres under LOOM_HOME/pg."
        ),
    )
    app_database_url: str | None = Field(
        default=None,
        description=(
            "URL the application connects with (role loom_app, no BYPASSRLS). Unset: "
            "DATABASE_URL with the user replaced by loom_app and LOOM_APP_DB_PASSWORD."
        ),
    )
    app_db_password: SecretStr | None = Field(
        default=None, description="Password given to role loom_app by the migrations."
    )
    pool_min_size: int = Field(default=1, ge=0, le=100, description="Connections kept open.")
    pool_max_size: int = Field(default=10, ge=1, le=200, description="Upper bound of the pool.")
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=120, description="Timeout to open one database connection."
    )


class EngineSettings(_Base):
    output_threshold_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Node outputs larger than this (as JSON) go to the blob store; rows and "
        "messages carry a reference. 256 KiB is the Step Functions payload limit.",
    )
    max_input_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest run input accepted, as JSON.",
    )
    run_concurrency: int = Field(
        default=16, ge=1, le=1000, description="Nodes of one run executing at once (local)."
    )
    engine_concurrency: int = Field(
        default=64, ge=1, le=10_000, description="Nodes executing at once in one process."
    )


class AuthSettings(_Base):
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key for Loom's access tokens (HS256). Unset locally: generated "
        "once into LOOM_HOME/jwt.key (mode 0600). Required on AWS.",
    )
    jwt_issuer: str = Field(default="loom", description="`iss` of Loom's access tokens.")
    jwt_audience: str = Field(default="loom-api", description="`aud` of Loom's access tokens.")
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=3600, le=365 * 86_400)
    oidc_issuer: str | None = Field(
        default=None, description="Also accept JWTs from this OIDC issuer (e.g. Cognito)."
    )
    oidc_audience: str | None = Field(default=None, description="`aud` required of OIDC JWTs.")
    oidc_jwks_url: str | None = Field(
        default=None, description="Where the OIDC issuer publishes its signing keys (JWKS)."
    )


class HttpSettings(_Base):
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (JSON list). Empty: none."
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=100 * 1024 * 1024,
        description="Largest request body, after decompression; larger answers 413.",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=1, description="Requests per minute per API key or user."
    )
    ip_rate_limit_per_minute: int = Field(
        default=1200, ge=1, description="Requests per minute per client address."
    )
    public_rate_limit_per_minute: int = Field(
        default=60, ge=1, description="Requests per minute per address to /v1/public and auth."
    )
    trusted_proxies: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Proxies in front of Loom whose X-Forwarded-For entries to trust (0: none).",
    )


class VaultSettings(_Base):
    master_key_file: Path | None = Field(
        default=None,
        description="Local master key for the credentials vault. Unset: LOOM_HOME/master.key, "
        "generated once with mode 0600.",
    )
    kms_key_id: str | None = Field(
        default=None, description="On AWS: the KMS key that wraps credential data keys."
    )


class LocalSettings(_Base):
    home: Path = Field(
        default=Path(".loom"),
        description="Local state: embedded Postgres (pg/), blobs (blobs/), master key.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address `loom up` listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port `loom up` listens on.")


class Settings(
    ObservabilitySettings,
    DatabaseSettings,
    EngineSettings,
    AuthSettings,
    HttpSettings,
    VaultSettings,
    LocalSettings,
):
    """Everything, for processes that run the whole platform (``loom up``, the CLI, tests)."""

    @property
    def pg_data_dir(self) -> Path:
        return self.home.resolve() / "pg"


def load_settings() -> Settings:
    """Read and validate the environment; bad values become one clear ``ConfigError``."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(
            f"Invalid configuration: {problems}.",
            solution="Fix the LOOM_* environment variables (see docs/configuration.md).",
        ) from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    field = str(loc[0]) if loc else "settings"
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    return alias if isinstance(alias, str) else f"LOOM_{field.upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
