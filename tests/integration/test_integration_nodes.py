"""EXTERNAL_ACTION nodes (Slack, GitHub, Notion, email) against real servers on 127.0.0.1:
fake service APIs shaped after the public ones (tests/utils/fake_services.py) and an
aiosmtpd mail server (tests/utils/smtp_server.py). Every test also checks that no secret
reached an output, an error or a log record."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from loom.config import get_settings
from loom.db import Database
from loom.engine.runner import LocalRunner
from loom.engine.states import RunStatus
from loom.errors import InvalidInput, LoomError
from loom.integrations.errors import (
    IntegrationAuthFailed,
    IntegrationError,
    IntegrationForbidden,
    IntegrationNotFound,
    IntegrationRateLimited,
    IntegrationUnavailable,
)
from loom.integrations.smtp import send_email
from loom.net import OutboundBlocked, OutboundCertificateInvalid, OutboundConnectionFailed
from loom.nodes import external_email, external_github, external_notion, external_slack
from loom.nodes.base import NodeContext, NodeResult, NodeSpec
from loom.nodes.registry import get_spec
from loom.secrets.keyring import LocalKeyring
from loom.secrets.service import create_credential
from loom.secrets.types import (
    CredentialData,
    CredentialType,
    GitHubToken,
    NotionToken,
    SlackBot,
    Smtp,
)
from loom.secrets.vault import Vault
from tests.utils.engine import Harness
from tests.utils.fake_services import (
    FakeApi,
    FakeGitHub,
    FakeNodeServices,
    FakeNotion,
    FakeSlack,
    json_reply,
    running,
)
from tests.utils.loopback_http import Reply
from tests.utils.smtp_server import SERVER_NAME, SmtpServer, self_signed, serve_smtp

SLACK_TOKEN = "xoxb-1111-2222-slack-secret-token"
GITHUB_TOKEN = "ghp_github_secret_token_0123456789"
NOTION_TOKEN = "ntn_notion_secret_token_0123456789"
SMTP_PASSWORD = "smtp-password-0123456789"
WRONG_TOKEN = "wrong-secret-token-0123456789"
SECRETS = (SLACK_TOKEN, GITHUB_TOKEN, NOTION_TOKEN, SMTP_PASSWORD, WRONG_TOKEN)

DATABASE = "1429989f-e8ac-4eff-bc8f-57f56486db54"
PAGE = "59833787d2f84c8a9d4e2d1a3c6b0f11"

pytestmark = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"  # the plain test server
)


class Leaks:
    """Everything a call produced that a user or a log could see."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def error(self, error: BaseException) -> None:
        self.texts.append(f"{error!s} {error!r}")
        if isinstance(error, LoomError):
            self.texts.append(json.dumps(error.to_dict()))


LEAKS = Leaks()


@pytest.fixture(autouse=True)
def no_secret_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After each test: no secret in any output, error or Loom log record. (aiosmtpd's own
    log, ``mail.log``, is the test server's, which receives the password by design.)"""
    LEAKS.texts.clear()
    caplog.set_level("DEBUG")
    yield
    logged = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    for text in LEAKS.texts + logged:
        for secret in SECRETS:
            assert secret not in text


def context(services: FakeNodeServices | None, attempt: int = 1) -> NodeContext:
    return NodeContext(
        workspace_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        node_run_id=uuid.uuid4(),
        node_id="act",
        attempt=attempt,
        run_input={},
        upstream={},
        services=services,
    )


def execute(
    spec: NodeSpec,
    parameters: dict[str, Any],
    services: FakeNodeServices | None,
    ctx: NodeContext | None = None,
) -> Any:
    run = spec.execute
    assert run is not None
    params = spec.parameters.model_validate(parameters)

    async def go() -> NodeResult:
        return await run(ctx or context(services), params, {})

    try:
        result = asyncio.run(go())
    except Exception as exc:
        LEAKS.error(exc)
        raise
    LEAKS.texts.append(json.dumps(result.output))
    return result.output


def fails(
    kind: type[BaseException], spec: NodeSpec, parameters: dict[str, Any], services: Any
) -> Any:
    with pytest.raises(kind) as caught:
        execute(spec, parameters, services)
    return caught.value


CREDENTIALS: dict[str, CredentialData] = {
    "slack": SlackBot(token=SecretStr(SLACK_TOKEN)),
    "github": GitHubToken(token=SecretStr(GITHUB_TOKEN)),
    "notion": NotionToken(token=SecretStr(NOTION_TOKEN)),
    "slack-wrong": SlackBot(token=SecretStr(WRONG_TOKEN)),
    "github-wrong": GitHubToken(token=SecretStr(WRONG_TOKEN)),
    "notion-wrong": NotionToken(token=SecretStr(WRONG_TOKEN)),
}


def services(fake: FakeApi | SmtpServer, **more: CredentialData) -> FakeNodeServices:
    return FakeNodeServices([fake.where], {**CREDENTIALS, **more})


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with running(FakeSlack(token=SLACK_TOKEN)) as fake:
        assert isinstance(fake, FakeSlack)
        yield fake


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with running(FakeGitHub(token=GITHUB_TOKEN)) as fake:
        assert isinstance(fake, FakeGitHub)
        yield fake


@pytest.fixture
def notion() -> Iterator[FakeNotion]:
    with running(FakeNotion(token=NOTION_TOKEN)) as fake:
        assert isinstance(fake, FakeNotion)
        yield fake


def slack_params(fake: FakeSlack, **change: Any) -> dict[str, Any]:
    return {
        "credential_id": "slack",
        "channel": "#general",
        "text": "Build 42 passed",
        "base_url": fake.url("/api"),
        **change,
    }


def issue_params(fake: FakeGitHub, **action: Any) -> dict[str, Any]:
    return {
        "credential_id": "github",
        "owner": "acme",
        "repo": "app",
        "action": {"operation": "create_issue", "title": "Nightly build failed", **action},
        "base_url": fake.url(),
    }


def page_params(fake: FakeNotion, **change: Any) -> dict[str, Any]:
    return {
        "credential_id": "notion",
        "parent_database_id": DATABASE,
        "title": "Incident 7",
        "base_url": fake.url("/v1"),
        **change,
    }


# --- registration ---------------------------------------------------------------------


@pytest.mark.parametrize("subtype", ["SLACK", "GITHUB", "NOTION", "EMAIL"])
def test_registered_with_side_effects_and_documented_parameters(subtype: str) -> None:
    spec = get_spec("EXTERNAL_ACTION", subtype)
    assert spec is not None and spec.side_effects
    schema = spec.catalogue_entry()["parameters"]
    assert "credential_id" in schema["required"]
    assert all(p.get("description") for p in schema["properties"].values())


# --- Slack ----------------------------------------------------------------------------


def test_slack_posts_a_message_with_the_bot_token(slack: FakeSlack) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Build 42* passed"}}]
    output = execute(
        external_slack.SPEC,
        slack_params(slack, blocks=blocks, thread_ts="1699999999.000200"),
        services(slack),
    )
    assert output == {"channel": "C0123ABCD", "ts": "1700000000.000001"}
    seen = slack.seen[0]
    assert (seen.method, seen.path) == ("POST", "/api/chat.postMessage")
    assert seen.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    assert seen.headers["content-type"].startswith("application/json")
    assert slack.body() == {
        "channel": "#general",
        "text": "Build 42 passed",
        "blocks": blocks,
        "thread_ts": "1699999999.000200",
    }


def test_slack_base_url_comes_from_the_settings(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = slack_params(slack)
    del params["base_url"]
    try:
        with monkeypatch.context() as env:
            env.setenv("LOOM_SLACK_API_URL", slack.url("/api"))
            get_settings.cache_clear()
            output = execute(external_slack.SPEC, params, services(slack))
    finally:
        get_settings.cache_clear()  # after the environment is restored
    assert output["channel"] == "C0123ABCD"
    assert slack.seen[0].path == "/api/chat.postMessage"


def test_slack_invalid_token_is_a_clear_credential_error(slack: FakeSlack) -> None:
    error = fails(
        IntegrationAuthFailed,
        external_slack.SPEC,
        slack_params(slack, credential_id="slack-wrong"),
        services(slack),
    )
    assert "invalid_auth" in error.message
    assert "slack_bot credential" in error.solution
    assert error.retryable is False


@pytest.mark.parametrize(
    ("channel", "code"), [("#nowhere", "channel_not_found"), ("C0999ZZZZ", "not_in_channel")]
)
def test_slack_channel_problems_say_what_to_do(slack: FakeSlack, channel: str, code: str) -> None:
    params = slack_params(slack, channel=channel)
    error = fails(IntegrationNotFound, external_slack.SPEC, params, services(slack))
    assert code in error.message and channel in error.message
    assert "invite the bot" in error.solution
    assert error.retryable is False


def test_slack_429_is_retried_after_retry_after(slack: FakeSlack) -> None:
    slack.script.append(
        json_reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})
    )
    output = execute(external_slack.SPEC, slack_params(slack), services(slack))
    assert output["ts"] == "1700000000.000001"
    assert len(slack.seen) == 2


def test_slack_persistent_429_fails_retryable_with_retry_after(slack: FakeSlack) -> None:
    limited = json_reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})
    slack.script.extend([limited, limited, limited])
    error = fails(IntegrationRateLimited, external_slack.SPEC, slack_params(slack), services(slack))
    assert error.retryable is True
    assert error.details == {"service": "Slack", "status": 429, "retry_after": 0.0}
    assert len(slack.seen) == 3


def test_slack_5xx_fails_retryable_without_posting_twice(slack: FakeSlack) -> None:
    slack.script.append(Reply(503, b"upstream connect error"))
    error = fails(IntegrationUnavailable, external_slack.SPEC, slack_params(slack), services(slack))
    assert error.retryable is True
    assert len(slack.seen) == 1


def test_slack_answer_that_is_not_slack_points_at_the_base_url(slack: FakeSlack) -> None:
    slack.script.append(Reply(200, b"<html>proxy login</html>", {"Content-Type": "text/html"}))
    error = fails(IntegrationError, external_slack.SPEC, slack_params(slack), services(slack))
    assert "base_url" in error.solution


# --- GitHub ---------------------------------------------------------------------------


def test_github_creates_an_issue(github: FakeGitHub) -> None:
    output = execute(
        external_github.SPEC,
        issue_params(github, body="See the log.", labels=["ci"], assignees=["ada"]),
        services(github),
    )
    assert output == {
        "id": 2_000_002,
        "number": 2,
        "html_url": "https://github.com/acme/app/issues/2",
        "url": github.url("/repos/acme/app/issues/2"),
        "state": "open",
    }
    seen = github.seen[0]
    assert (seen.method, seen.path) == ("POST", "/repos/acme/app/issues")
    assert seen.headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert seen.headers["accept"] == "application/vnd.github+json"
    assert seen.headers["x-github-api-version"] == "2022-11-28"
    assert github.body() == {
        "title": "Nightly build failed",
        "body": "See the log.",
        "labels": ["ci"],
        "assignees": ["ada"],
    }


def test_github_comments_on_an_issue_of_an_enterprise_server(github: FakeGitHub) -> None:
    params = issue_params(github)
    params["action"] = {"operation": "add_comment", "issue_number": 1, "body": "Fixed in #2."}
    params["base_url"] = github.url("/api/v3")
    output = execute(external_github.SPEC, params, services(github))
    assert output == {
        "id": 3_000_001,
        "html_url": "https://github.com/acme/app/issues/1#issuecomment-3000001",
        "url": github.url("/repos/acme/app/issues/comments/3000001"),
    }
    assert github.seen[0].path == "/api/v3/repos/acme/app/issues/1/comments"
    assert github.body() == {"body": "Fixed in #2."}


def test_github_operations_are_a_discriminated_union(github: FakeGitHub) -> None:
    spec = external_github.SPEC
    params = issue_params(github)
    params["action"] = {"operation": "add_comment", "body": "no number"}
    with pytest.raises(ValidationError, match="issue_number"):
        spec.parameters.model_validate(params)
    params["action"] = {"operation": "add_comment", "issue_number": 1, "body": "x", "title": "y"}
    with pytest.raises(ValidationError, match="title"):
        spec.parameters.model_validate(params)
    params["action"] = {"operation": "close_issue", "issue_number": 1}
    with pytest.raises(ValidationError, match="create_issue"):
        spec.parameters.model_validate(params)


def test_github_bad_credentials(github: FakeGitHub) -> None:
    params = {**issue_params(github), "credential_id": "github-wrong"}
    error = fails(IntegrationAuthFailed, external_github.SPEC, params, services(github))
    assert error.message == "GitHub answered 401 for acme/app: Bad credentials"
    assert "github_token credential" in error.solution
    assert error.retryable is False


def test_github_unknown_repository_is_not_found(github: FakeGitHub) -> None:
    params = {**issue_params(github), "repo": "secret-project"}
    error = fails(IntegrationNotFound, external_github.SPEC, params, services(github))
    assert "acme/secret-project" in error.message
    assert "private repository" in error.solution
    assert error.retryable is False


def test_github_validation_errors_are_quoted(github: FakeGitHub) -> None:
    error = fails(
        IntegrationError,
        external_github.SPEC,
        issue_params(github, assignees=["ghost"]),
        services(github),
    )
    assert error.code == "integration_rejected"
    assert error.message.endswith("Validation Failed; assignees invalid")
    assert error.retryable is False


def test_github_rate_limit_403_is_retryable(github: FakeGitHub) -> None:
    body = {"message": "API rate limit exceeded for installation.", "documentation_url": "x"}
    github.script.append(json_reply(403, body, {"X-RateLimit-Remaining": "0"}))
    error = fails(
        IntegrationRateLimited, external_github.SPEC, issue_params(github), services(github)
    )
    assert "rate limit exceeded" in error.message
    assert error.retryable is True


def test_github_permission_403_is_not_retryable(github: FakeGitHub) -> None:
    body = {"message": "Resource not accessible by integration", "documentation_url": "x"}
    github.script.append(json_reply(403, body))
    error = fails(
        IntegrationForbidden, external_github.SPEC, issue_params(github), services(github)
    )
    assert "Resource not accessible" in error.message
    assert error.retryable is False


def test_github_5xx_is_retryable(github: FakeGitHub) -> None:
    github.script.append(json_reply(502, {"message": "Server Error"}))
    error = fails(
        IntegrationUnavailable, external_github.SPEC, issue_params(github), services(github)
    )
    assert error.retryable is True


@pytest.mark.parametrize(("owner", "repo"), [("acme", ".."), ("..", "app"), ("acme/x", "app")])
def test_github_names_cannot_climb_the_api_path(github: FakeGitHub, owner: str, repo: str) -> None:
    params = {**issue_params(github), "owner": owner, "repo": repo}
    error = fails(InvalidInput, external_github.SPEC, params, services(github))
    assert "not a GitHub repository name" in error.message
    assert github.seen == []


# --- Notion ---------------------------------------------------------------------------


def test_notion_creates_a_page_in_a_database(notion: FakeNotion) -> None:
    long = "x" * 2500
    output = execute(
        external_notion.SPEC,
        page_params(
            notion,
            content=f"First paragraph\nstill first.\n\n{long}\n\n\n",
            properties={"Status": {"select": {"name": "Open"}}},
        ),
        services(notion),
    )
    assert output["created_time"] == "2024-05-01T12:00:00.000Z"
    assert output["url"].endswith(output["id"].replace("-", ""))
    seen = notion.seen[0]
    assert (seen.method, seen.path) == ("POST", "/v1/pages")
    assert seen.headers["authorization"] == f"Bearer {NOTION_TOKEN}"
    assert seen.headers["notion-version"] == "2022-06-28"
    sent = notion.body()
    assert sent["parent"] == {"database_id": DATABASE.replace("-", "")}
    assert sent["properties"] == {
        "Status": {"select": {"name": "Open"}},
        "title": {"title": [{"type": "text", "text": {"content": "Incident 7"}}]},
    }
    texts = [[t["text"]["content"] for t in b["paragraph"]["rich_text"]] for b in sent["children"]]
    assert texts == [["First paragraph\nstill first."], ["x" * 2000, "x" * 500]]


def test_notion_creates_a_page_under_a_page(notion: FakeNotion) -> None:
    params = page_params(notion, parent_database_id=None, parent_page_id=PAGE)
    assert execute(external_notion.SPEC, params, services(notion))["id"]
    assert notion.body()["parent"] == {"page_id": PAGE}
    assert "children" not in notion.body()


def test_notion_invalid_token(notion: FakeNotion) -> None:
    params = page_params(notion, credential_id="notion-wrong")
    error = fails(IntegrationAuthFailed, external_notion.SPEC, params, services(notion))
    assert "unauthorized: API token is invalid." in error.message
    assert error.retryable is False


def test_notion_parent_not_shared_is_not_found(notion: FakeNotion) -> None:
    params = page_params(notion, parent_database_id="0" * 32)
    error = fails(IntegrationNotFound, external_notion.SPEC, params, services(notion))
    assert "object_not_found" in error.message
    assert "share the page or database with the integration" in error.solution


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"parent_page_id": PAGE}, "exactly one parent"),
        ({"parent_database_id": None}, "exactly one parent"),
        ({"parent_database_id": "not-an-id"}, "not a Notion id"),
        ({"properties": {"Name": {"title": []}}}, "sets the page title"),
    ],
)
def test_notion_malformed_parameters_fail_before_calling(
    notion: FakeNotion, change: dict[str, Any], words: str
) -> None:
    error = fails(
        InvalidInput, external_notion.SPEC, page_params(notion, **change), services(notion)
    )
    assert words in error.message
    assert notion.seen == []


@pytest.mark.parametrize("status", [500, 503])
def test_notion_5xx_is_retryable(notion: FakeNotion, status: int) -> None:
    notion.script.append(json_reply(status, {"object": "error", "code": "internal_server_error"}))
    error = fails(
        IntegrationUnavailable, external_notion.SPEC, page_params(notion), services(notion)
    )
    assert error.retryable is True


# --- every HTTP service ---------------------------------------------------------------


def fake_and_params(name: str) -> Iterator[tuple[FakeApi, NodeSpec, dict[str, Any]]]:
    if name == "slack":
        with running(FakeSlack(token=SLACK_TOKEN)) as fake:
            assert isinstance(fake, FakeSlack)
            yield fake, external_slack.SPEC, slack_params(fake)
    elif name == "github":
        with running(FakeGitHub(token=GITHUB_TOKEN)) as fake:
            assert isinstance(fake, FakeGitHub)
            yield fake, external_github.SPEC, issue_params(fake)
    else:
        with running(FakeNotion(token=NOTION_TOKEN)) as fake:
            assert isinstance(fake, FakeNotion)
            yield fake, external_notion.SPEC, page_params(fake)


@pytest.fixture(params=["slack", "github", "notion"])
def service(request: pytest.FixtureRequest) -> Iterator[tuple[FakeApi, NodeSpec, dict[str, Any]]]:
    yield from fake_and_params(request.param)


def test_a_base_url_not_allowlisted_is_refused_before_any_call(
    service: tuple[FakeApi, NodeSpec, dict[str, Any]],
) -> None:
    """An editor may use a credential but not send it to a server of their choosing."""
    fake, spec, params = service
    error = fails(InvalidInput, spec, params, FakeNodeServices([], CREDENTIALS))
    assert "outbound allowlist" in error.message and error.retryable is False
    elsewhere = {**params, "base_url": "https://collector.example.com/api"}
    error = fails(InvalidInput, spec, elsewhere, services(fake))
    assert "outbound allowlist" in error.message
    assert fake.seen == []


def test_a_credential_of_another_type_is_refused(
    service: tuple[FakeApi, NodeSpec, dict[str, Any]],
) -> None:
    fake, spec, params = service
    swapped = {"slack": "github", "github": "notion", "notion": "slack"}
    params = {**params, "credential_id": swapped[params["credential_id"]]}
    error = fails(InvalidInput, spec, params, services(fake))
    assert f"Credential {params['credential_id']} is not a" in error.message
    assert error.retryable is False
    assert fake.seen == []


def test_without_credentials_where_it_runs_the_node_says_so(
    service: tuple[FakeApi, NodeSpec, dict[str, Any]],
) -> None:
    _, spec, params = service
    error = fails(InvalidInput, spec, params, None)
    assert "needs a credential" in error.message


def test_unknown_credential_is_not_found(service: tuple[FakeApi, NodeSpec, dict[str, Any]]) -> None:
    fake, spec, params = service
    fails(LoomError, spec, {**params, "credential_id": "missing"}, services(fake))


def test_a_server_echoing_the_token_has_it_redacted(
    service: tuple[FakeApi, NodeSpec, dict[str, Any]],
) -> None:
    fake, spec, params = service
    echoed = f"token {fake.token} is invalid"
    fake.script.append(
        json_reply(400, {"ok": False, "error": echoed, "message": echoed, "code": echoed})
    )
    fails(LoomError, spec, params, services(fake))  # the autouse fixture checks the text


# --- email ----------------------------------------------------------------------------


def smtp_credential(server: SmtpServer, password: str = SMTP_PASSWORD) -> Smtp:
    return Smtp(
        host="127.0.0.1",
        port=server.port,
        username="ada",
        password=SecretStr(password),
        starttls=False,
    )


def email_params(**change: Any) -> dict[str, Any]:
    return {
        "credential_id": "smtp",
        "sender": "Loom Alerts <alerts@example.com>",
        "to": ["bob@example.com"],
        "subject": "Build 42 passed",
        "text": "All green.",
        **change,
    }


@pytest.fixture
def mail() -> Iterator[SmtpServer]:
    with serve_smtp(users={"ada": SMTP_PASSWORD}, reject={"nobody@example.com"}) as server:
        yield server


def test_email_is_sent_with_a_message_id_from_the_idempotency_key(mail: SmtpServer) -> None:
    params = email_params(
        cc=["Carol <carol@example.com>"],
        reply_to="ops@example.com",
        html="<p>All <b>green</b>.</p>",
    )
    ctx = context(services(mail, smtp=smtp_credential(mail)), attempt=2)
    output = execute(external_email.SPEC, params, None, ctx)
    expected_id = f"<{ctx.node_run_id}.2.loom@example.com>"
    assert output == {
        "message_id": expected_id,
        "accepted": ["bob@example.com", "carol@example.com"],
        "rejected": {},
    }
    [received] = mail.received
    assert mail.logins == [("ada", True)]
    assert received.login == "ada"
    assert received.mail_from == "alerts@example.com"
    assert received.rcpt_tos == ["bob@example.com", "carol@example.com"]
    message = received.message
    assert message["Message-ID"] == expected_id
    assert message["From"] == "Loom Alerts <alerts@example.com>"
    assert message["To"] == "bob@example.com"
    assert message["Cc"] == "Carol <carol@example.com>"
    assert message["Reply-To"] == "ops@example.com"
    assert message["Subject"] == "Build 42 passed"
    assert message["Date"]
    plain, html = (part.get_content().strip() for part in message.iter_parts())
    assert (plain, html) == ("All green.", "<p>All <b>green</b>.</p>")


def test_email_wrong_password_is_a_clear_credential_error(mail: SmtpServer) -> None:
    credential = smtp_credential(mail, password=WRONG_TOKEN)
    error = fails(
        IntegrationAuthFailed, external_email.SPEC, email_params(), services(mail, smtp=credential)
    )
    assert "535" in error.message and "refused the login" in error.message
    assert error.retryable is False
    assert set(mail.logins) == {("ada", False)}  # aiosmtplib tries PLAIN, then LOGIN
    assert mail.received == []


def test_email_rejected_recipients_are_reported(mail: SmtpServer) -> None:
    params = email_params(to=["bob@example.com", "nobody@example.com"])
    output = execute(external_email.SPEC, params, services(mail, smtp=smtp_credential(mail)))
    assert output["accepted"] == ["bob@example.com"]
    assert list(output["rejected"]) == ["nobody@example.com"]
    assert output["rejected"]["nobody@example.com"].startswith("550 5.1.1")
    assert mail.received[0].rcpt_tos == ["bob@example.com"]


def test_email_every_recipient_rejected_fails_not_retryable(mail: SmtpServer) -> None:
    params = email_params(to=["nobody@example.com"])
    error = fails(
        IntegrationError, external_email.SPEC, params, services(mail, smtp=smtp_credential(mail))
    )
    assert error.code == "integration_rejected" and error.retryable is False
    assert list(error.details["rejected"]) == ["nobody@example.com"]


def test_email_deferred_recipient_is_retryable() -> None:
    with serve_smtp(defer={"bob@example.com"}) as server:
        credential = Smtp(host="127.0.0.1", port=server.port, starttls=False)
        error = fails(
            IntegrationUnavailable,
            external_email.SPEC,
            email_params(),
            services(server, smtp=credential),
        )
    assert error.retryable is True
    assert error.details["rejected"]["bob@example.com"].startswith("451")


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "Hello\r\nBcc: victim@example.com"},
        {"subject": "Hello\nX-Injected: 1"},
        {"to": ["bob@example.com\r\nBcc: victim@example.com"]},
        {"cc": ["carol@example.com\nBcc: victim@example.com"]},
        {"reply_to": "ops@example.com\r\nBcc: victim@example.com"},
        {"sender": "alerts@example.com\rBcc: victim@example.com"},
    ],
)
def test_email_header_injection_is_refused(mail: SmtpServer, change: dict[str, Any]) -> None:
    params = email_params(**change)
    error = fails(
        InvalidInput, external_email.SPEC, params, services(mail, smtp=smtp_credential(mail))
    )
    assert "line break or control character" in error.message
    assert mail.logins == [] and mail.received == []


@pytest.mark.parametrize(
    "address",
    ["bob", "bob@", "@example.com", "a@b.com, c@d.com", "Bob <bob@example.com> extra", "a b@c.com"],
)
def test_email_invalid_addresses_are_refused(mail: SmtpServer, address: str) -> None:
    params = email_params(to=[address])
    error = fails(
        InvalidInput, external_email.SPEC, params, services(mail, smtp=smtp_credential(mail))
    )
    assert "not one valid email address" in error.message
    assert mail.received == []


def test_email_to_a_loopback_server_not_allowlisted_is_refused(mail: SmtpServer) -> None:
    refuse = FakeNodeServices([], {"smtp": smtp_credential(mail)})
    error = fails(OutboundBlocked, external_email.SPEC, email_params(), refuse)
    assert "127.0.0.1" in error.message and "loopback" in error.message
    assert mail.where in error.solution
    assert mail.logins == []


async def loopback_dns(host: str, port: int) -> Sequence[str]:
    return ["127.0.0.1"]


def send(credential: Smtp, allowlist: Sequence[str], **options: Any) -> dict[str, Any]:
    try:
        return asyncio.run(
            send_email(
                credential,
                sender="alerts@example.com",
                to=["bob@example.com"],
                subject="Hi",
                text="Hello.",
                allowlist=allowlist,
                **options,
            )
        )
    except Exception as exc:
        LEAKS.error(exc)
        raise


def test_smtp_names_resolving_to_internal_addresses_are_refused() -> None:
    credential = Smtp(host="mail.internal.test", port=25, starttls=False)
    with pytest.raises(OutboundBlocked, match=r"mail\.internal\.test resolved to 127\.0\.0\.1"):
        send(credential, [], resolver=loopback_dns)


def test_smtp_metadata_addresses_are_refused_even_when_allowlisted() -> None:
    credential = Smtp(host="169.254.169.254", port=25, starttls=False)
    with pytest.raises(OutboundBlocked, match="cloud metadata"):
        send(credential, ["169.254.169.254"])


def test_smtp_server_that_is_down_is_a_retryable_connection_error() -> None:
    with serve_smtp() as server:
        port = server.port
    credential = Smtp(host="127.0.0.1", port=port, starttls=False)
    with pytest.raises(OutboundConnectionFailed) as caught:
        send(credential, [f"127.0.0.1:{port}"])
    assert caught.value.retryable is True


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    return self_signed(SERVER_NAME, tmp_path_factory.mktemp("smtp-tls"))


def test_starttls_verifies_the_host_name_on_the_pinned_connection(
    certificate: tuple[ssl.SSLContext, str],
) -> None:
    """mail.loom.test and other.loom.test both resolve (fake DNS) to the loopback server,
    whose certificate names mail.loom.test only: the connection goes to the checked
    address, and TLS still verifies the name in the credential."""
    server_context, pem = certificate
    trusted = ssl.create_default_context(cadata=pem)
    with serve_smtp(users={"ada": SMTP_PASSWORD}, starttls=server_context) as server:

        def credential(host: str) -> Smtp:
            return Smtp(
                host=host, port=server.port, username="ada", password=SecretStr(SMTP_PASSWORD)
            )

        output = send(
            credential(SERVER_NAME), [SERVER_NAME], resolver=loopback_dns, tls_context=trusted
        )
        assert output["accepted"] == ["bob@example.com"]
        assert server.received[0].tls and server.received[0].login == "ada"
        with pytest.raises(OutboundCertificateInvalid, match=r"not valid for other\.loom\.test"):
            send(
                credential("other.loom.test"),
                ["other.loom.test"],
                resolver=loopback_dns,
                tls_context=trusted,
            )
        with pytest.raises(OutboundCertificateInvalid):  # the system store does not trust it
            send(credential(SERVER_NAME), [SERVER_NAME], resolver=loopback_dns)
    assert server.logins == [("ada", True)]


def test_starttls_required_but_not_offered_is_refused(mail: SmtpServer) -> None:
    credential = Smtp(host="127.0.0.1", port=mail.port, starttls=True)
    with pytest.raises(IntegrationError, match="STARTTLS") as caught:
        send(credential, [mail.where])
    assert caught.value.retryable is False
    assert mail.received == []


# --- on the engine --------------------------------------------------------------------


def test_a_workflow_creates_an_issue_on_the_engine(
    engine_harness: Harness, database: Database, workspace: uuid.UUID, github: FakeGitHub
) -> None:
    vault = Vault(LocalKeyring(b"k" * 32))
    good, bad = (
        create_credential(
            database,
            vault,
            workspace_id=workspace,
            name=name,
            credential_type=CredentialType.GITHUB_TOKEN,
            data={"token": token},
        ).id
        for name, token in (("github", GITHUB_TOKEN), ("stale", WRONG_TOKEN))
    )
    with database.tenant(workspace) as conn:
        conn.execute(
            "UPDATE workspaces SET settings = jsonb_set(settings, '{outbound_allowlist}', %s)",
            (json.dumps([github.where]),),
        )
    runner = LocalRunner(engine_harness.engine, vault=vault)

    def run(credential_id: uuid.UUID) -> tuple[Any, dict[str, Any]]:
        definition = {
            "name": "Open an issue",
            "nodes": [
                {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
                {
                    "id": "issue",
                    "type": "EXTERNAL_ACTION",
                    "subtype": "GITHUB",
                    "parameters": {
                        "credential_id": str(credential_id),
                        "owner": "acme",
                        "repo": "app",
                        "action": {"operation": "create_issue", "title": "{% $input.title %}"},
                        "base_url": github.url(),
                    },
                },
            ],
            "edges": [{"from": "start", "to": "issue"}],
        }
        run_id = engine_harness.start(definition, {"title": "Disk full on db-1"})
        result = asyncio.run(runner.drive(workspace, run_id))
        texts = json.dumps(
            [engine_harness.nodes(run_id), engine_harness.events(run_id)], default=str
        )
        LEAKS.texts.append(texts)
        return result, engine_harness.nodes(run_id)["issue"]

    result, node = run(good)
    assert result.status is RunStatus.SUCCESS
    assert node["output"]["html_url"] == "https://github.com/acme/app/issues/2"
    assert github.body() == {"title": "Disk full on db-1"}
    assert github.seen[0].headers["authorization"] == f"Bearer {GITHUB_TOKEN}"

    result, node = run(bad)
    assert result.status is RunStatus.ERROR
    assert node["error"]["code"] == "integration_auth_failed"
    assert "Bad credentials" in node["error"]["message"]
