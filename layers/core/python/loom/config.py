"""Settings: the only place in Loom that reads the environment.

One pydantic-settings model, validated when first asked for (never at import time), built
from small mixins so a Lambda function validates only what it needs at cold start.
Every field is documented in ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from loom.errors import ConfigError


class _Base(BaseSettings):
    # The mixins are types, never instantiated: only ``Settings`` builds its validator.
    model_config = SettingsConfigDict(
        env_prefix="LOOM_", extra="ignore", populate_by_name=True, frozen=True, defer_build=True
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
    pool_min_size: int = Field(default=1, ge=0, le=100, description="Kept open per pool.")
    pool_max_size: int = Field(default=10, ge=1, le=200, description="Upper bound of each pool.")
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
    hil_sweep_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How often the local engine times out overdue human-in-the-loop requests.",
    )
    engine_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Scheduling niceness added to `loom up`'s engine process, so requests "
        "are answered first when the machine is busy and runs catch up when it is not. "
        "0 shares the CPU evenly.",
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
    webhook_rate_limit_per_minute: int = Field(
        default=6000, ge=1, description="Deliveries per minute per trigger to /v1/hooks."
    )
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Base URL people and services reach this API at, used in one-time respond "
        "links. Unset: http://LOOM_API_HOST:LOOM_API_PORT.",
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


_HTTP_URL = r"^https?://\S+$"


class IntegrationSettings(_Base):
    slack_api_url: str = Field(
        default="https://slack.com/api",
        pattern=_HTTP_URL,
        description="Base URL of the Slack Web API (EXTERNAL_ACTION.SLACK, Slack notifications).",
    )
    github_api_url: str = Field(
        default="https://api.github.com",
        pattern=_HTTP_URL,
        description="Base URL of the GitHub REST API; GitHub Enterprise: https://HOST/api/v3.",
    )
    notion_api_url: str = Field(
        default="https://api.notion.com/v1",
        pattern=_HTTP_URL,
        description="Base URL of the Notion API.",
    )


class TriggerSettings(_Base):
    webhook_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=5 * 1024 * 1024,
        description="Largest webhook body a trigger accepts; larger answers 413.",
    )
    intake_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Attempts to start a run from an event before it goes to the dead letters.",
    )
    intake_retry_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Wait before the 2nd attempt; doubles after each failure (at most 300 s).",
    )
    intake_visibility_seconds: float = Field(
        default=60.0,
        ge=1,
        le=3600,
        description="How long a consumer holds a queued event before another may take it.",
    )
    intake_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="How often the local queue consumer looks for due events when idle.",
    )
    scheduler_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Longest sleep of the local scheduler.",
    )
    scheduler_grace_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86_400,
        description="A fire this late is still on time; later ones count as missed and "
        "follow the trigger's missed-fire policy.",
    )
    delivery_retention_seconds: int = Field(
        default=7 * 86_400,
        ge=600,
        le=365 * 86_400,
        description="How long accepted delivery ids and signatures are remembered to "
        "refuse replays.",
    )
    smtp_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the local SMTP listener for TRIGGER.EMAIL. Unset: no listener.",
    )
    smtp_host: str = Field(
        default="127.0.0.1",
        pattern=r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$",
        description="Loopback address of the local SMTP listener.",
    )
    smtp_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=50 * 1024 * 1024,
        description="Largest email the SMTP listener accepts.",
    )
    mail_domain: str = Field(
        default="loom.localhost",
        pattern=r"^[A-Za-z0-9.-]{1,253}$",
        description="Domain of TRIGGER.EMAIL addresses (<trigger id>@<domain>).",
    )


class LlmSettings(_Base):
    llm_api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Platform keys per model provider, as JSON. A workspace's own "
        "llm_api_key credential for the provider takes precedence.",
    )
    llm_api_bases: dict[str, str] = Field(
        default_factory=dict,
        description="Base URL per provider for the platform keys (an OpenAI-compatible "
        "proxy or gateway), as JSON.",
    )
    llm_deadline_seconds: float = Field(
        default=60.0,
        gt=0,
        le=900,
        description="Default deadline of one gateway call, retries and fallbacks included; "
        "keep it below the function's own timeout.",
    )
    llm_max_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts per model before the next fallback."
    )
    llm_backoff_seconds: float = Field(
        default=0.5, gt=0, le=60, description="Wait before the 2nd attempt; doubles, jittered."
    )
    llm_backoff_max_seconds: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="Longest backoff between attempts (a longer Retry-After is honoured).",
    )
    llm_breaker_failures: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive server errors or timeouts of one model that open its circuit.",
    )
    llm_breaker_reset_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long an open circuit refuses calls before one probe may try.",
    )
    llm_workspace_calls_per_minute: int = Field(
        default=600, ge=1, description="Model calls per minute per workspace."
    )
    llm_provider_calls_per_minute: int = Field(
        default=3000,
        ge=1,
        description="Model calls per minute per provider and key owner (the platform's keys "
        "across all workspaces, or one workspace's own key).",
    )
    llm_budget_warn_percent: int = Field(
        default=80,
        ge=1,
        le=100,
        description="Share of a budget at which a warning is raised, unless a workspace "
        "sets its own.",
    )


class BuilderSettings(_Base):
    builder_model: str | None = Field(
        default=None,
        min_length=3,
        max_length=200,
        description="Model the workflow builder drafts with when a request names none "
        "(provider/model, or local/smollm2-135m-instruct offline). Unset: requests must name one.",
    )
    builder_repair_rounds: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Times the builder sends validation problems back to the model per turn.",
    )
    builder_max_tokens: int = Field(
        default=2000, ge=256, le=32_000, description="Longest answer the builder asks for."
    )
    builder_call_deadline_seconds: float = Field(
        default=120.0, gt=0, le=900, description="Deadline of one builder model call."
    )
    builder_dry_run_seconds: float = Field(
        default=60.0, gt=0, le=900, description="Longest a builder dry run may take."
    )


class AgentExamSettings(_Base):
    agent_exam_interval_seconds: float = Field(
        default=600.0,
        ge=0,
        le=86_400,
        description="How often `loom up` looks for agents that became ready and examines "
        "them. 0: never (exams only through the API).",
    )
    agent_exam_deadline_seconds: float = Field(
        default=120.0,
        gt=0,
        le=840,
        description="Longest one graduation exam may take; cases not finished by then fail.",
    )
    agent_exam_concurrency: int = Field(
        default=4, ge=1, le=64, description="Exam case runs of one exam that run at once."
    )
    agent_readiness: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Overrides of the readiness thresholds per target level, as JSON "
        '({"INTERN": {"min_episodes": 5}}).',
    )

    @field_validator("agent_readiness")
    @classmethod
    def _known_thresholds(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for level, row in value.items():
            if level not in _GRADUATION_LEVELS:
                raise ValueError(f"{level} is not one of {', '.join(_GRADUATION_LEVELS)}")
            for name, number in row.items():
                if name not in _READINESS_FIELDS or number < 0:
                    raise ValueError(
                        f"{level}.{name}: use non-negative {', '.join(_READINESS_FIELDS)}"
                    )
        return value


_GRADUATION_LEVELS = ("INTERN", "SUPERVISED", "AUTONOMOUS")
_READINESS_FIELDS = (
    "min_episodes",
    "min_success_rate",
    "min_rated",
    "min_mean_rating",
    "max_violation_rate",
)


class LocalSettings(_Base):
    home: Path = Field(
        default=Path(".loom"),
        description="Local state: embedded Postgres (pg/), blobs (blobs/), master key.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address `loom up` listens on.")
    api_port: int = Field(default=8000, ge=1, le=65535, description="Port `loom up` listens on.")


class LocalModelSettings(_Base):
    local_model_file: Path | None = Field(
        default=None,
        description="A GGUF chat model file served as model local/custom (offline, on "
        "127.0.0.1). Unset: only local/smollm2-135m-instruct.",
    )
    local_model_context: int = Field(
        default=8192,
        ge=512,
        le=131_072,
        description="Context window in tokens of the local chat model server, shared by "
        "its two parallel slots.",
    )
    local_model_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="CPU threads of the local chat model server. 0: half the CPUs, at least "
        "1, at most 8.",
    )


class AwsSettings(_Base):
    """Where the serverless parts are; set by the CDK stacks on each function."""

    state_machine_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$",
        description="The workflow_run state machine. Set: runs are driven by Step Functions.",
    )
    node_functions: dict[str, str] = Field(
        default_factory=dict,
        description="Lambda function per node type that runs its nodes, as JSON "
        '({"ACTION": "loom-node-action", ...}).',
    )
    code_function: str | None = Field(
        default=None, description="Lambda function that runs ACTION.CODE, without permissions."
    )
    hil_callback_function: str | None = Field(
        default=None,
        description="Lambda function that hands human answers to waiting executions.",
    )
    blob_bucket: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="S3 bucket for blobs (large node outputs). Unset: LOOM_HOME/blobs.",
    )
    database_secret_arn: str | None = Field(
        default=None,
        description="Secrets Manager secret with the database owner's credentials, for the "
        "migrations function.",
    )
    history_event_budget: int = Field(
        default=20_000,
        ge=200,
        le=24_000,
        description="History events one execution may use before the run continues in a new "
        "execution (Step Functions stops at 25,000).",
    )
    intake_queue_url: str | None = Field(
        default=None,
        pattern=r"^https://\S+$",
        description="SQS queue of trigger events that wait or are retried. Unset: the "
        "Postgres queue table.",
    )
    intake_dlq_url: str | None = Field(
        default=None,
        pattern=r"^https://\S+$",
        description="The intake queue's dead-letter queue, which the redrive worker empties.",
    )
    schedule_group: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Za-z_.-]{1,64}$",
        description="EventBridge Scheduler group of the per-trigger CRON schedules. Unset: "
        "schedules are only rows, fired by a scheduler loop or job.",
    )
    schedule_target_arn: str | None = Field(
        default=None, description="Function the per-trigger schedules invoke."
    )
    schedule_role_arn: str | None = Field(
        default=None, description="Role EventBridge Scheduler assumes to invoke it."
    )
    schedule_dlq_arn: str | None = Field(
        default=None, description="SQS queue of schedule invocations that failed."
    )
    mail_bucket: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="S3 bucket where SES stores inbound mail for TRIGGER.EMAIL.",
    )
    db_iam_auth: bool = Field(
        default=False,
        description="Connect as loom_app with IAM auth tokens (RDS Proxy) instead of a password.",
    )


class Settings(
    ObservabilitySettings,
    DatabaseSettings,
    EngineSettings,
    AuthSettings,
    HttpSettings,
    VaultSettings,
    IntegrationSettings,
    TriggerSettings,
    LlmSettings,
    BuilderSettings,
    AgentExamSettings,
    LocalSettings,
    LocalModelSettings,
    AwsSettings,
):
    """Everything, for processes that run the whole platform (``loom up``, the CLI, tests)."""

    # Every process validates it at its start: build its validator now, not in the first call.
    model_config = SettingsConfigDict(defer_build=False)

    @property
    def base_url(self) -> str:
        """Where this API is reached from outside (``public_url``, else the local address)."""
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

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
