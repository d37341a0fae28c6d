"""Webhook triggers over real HTTP: signatures, replays, sizes, content types, unknown
triggers, the sync mode, GitHub and Slack deliveries, and the flood limit."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from loom.db import Database
from tests.utils.api import ApiServer, Session, signup, start_api_server, test_settings
from tests.utils.triggers import (
    body_of,
    count,
    create,
    deploy,
    flow,
    github_headers,
    runs_of,
    signed,
    slack_headers,
    trigger_t,
    wait_finished,
    webhook,
)

STORED = ("queue", "trigger_deliveries", "runs", "dead_letters")


@pytest.fixture
def owner(http: httpx.Client) -> Session:
    return signup(http)


def _deployed(http: httpx.Client, owner: Session, trigger: dict[str, object]) -> dict[str, str]:
    workflow_id = create(http, owner.headers, flow(trigger))
    hook = trigger_t(deploy(http, owner.headers, workflow_id))
    return {"workflow_id": workflow_id, "url": hook["url"], "secret": hook["secret"] or ""}


def _stored(database: Database, owner: Session) -> dict[str, int]:
    return {table: count(database, uuid.UUID(owner.workspace_id), table) for table in STORED}


def test_a_signed_delivery_starts_a_run_with_the_request_as_input(
    http: httpx.Client, owner: Session, database: Database
) -> None:
    hook = _deployed(http, owner, webhook())
    assert len(hook["secret"]) == 64
    body = body_of({"order": 42})
    headers = signed(hook["secret"], body, extra={"X-Loom-Delivery": "d-1", "X-Custom": "yes"})
    response = http.post(hook["url"] + "?source=shop", content=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "started"
    run_id = uuid.UUID(response.json()["run_id"])
    run = wait_finished(database, uuid.UUID(owner.workspace_id), run_id)
    assert run["status"] == "SUCCESS"
    assert run["output"]["body"] == {"order": 42}
    assert run["output"]["query"] == {"source": "shop"}
    assert run["output"]["delivery_id"] == "d-1"
    assert run["output"]["headers"]["x-custom"] == "yes"
    assert "x-loom-signature" not in run["output"]["headers"]
    assert run["trigger"]["type"] == "webhook" and run["trigger"]["node_id"] == "t"


@pytest.mark.parametrize(
    "tamper",
    ["wrong secret", "changed body", "stale timestamp", "future timestamp", "no header"],
)
def test_bad_signatures_are_refused_and_store_nothing(
    http: httpx.Client, owner: Session, database: Database, tamper: str
) -> None:
    hook = _deployed(http, owner, webhook())
    body = body_of({"a": 1})
    now = time.time()
    secret = "0" * 64 if tamper == "wrong secret" else hook["secret"]
    when = {"stale timestamp": now - 301, "future timestamp": now + 301}.get(tamper, now)
    headers = signed(secret, body, now=when)
    if tamper == "no header":
        del headers["X-Loom-Signature"]
    sent = body_of({"a": 2}) if tamper == "changed body" else body
    before = _stored(database, owner)
    response = http.post(hook["url"], content=sent, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "signature_invalid"
    assert _stored(database, owner) == before


def test_a_replayed_delivery_starts_nothing(
    http: httpx.Client, owner: Session, database: Database
) -> None:
    hook = _deployed(http, owner, webhook())
    body = body_of({"n": 1})
    first = signed(hook["secret"], body, extra={"X-Loom-Delivery": "once"})
    assert http.post(hook["url"], content=body, headers=first).status_code == 202
    # The same request again (a captured replay), and the same delivery id re-signed later.
    again = http.post(hook["url"], content=body, headers=first)
    resent = signed(hook["secret"], body, now=time.time() + 1, extra={"X-Loom-Delivery": "once"})
    later = http.post(hook["url"], content=body, headers=resent)
    for response in (again, later):
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "duplicate"
    # Without a delivery id, an exact replay is still recognised by its signature.
    bare = signed(hook["secret"], body_of({"n": 2}))
    assert http.post(hook["url"], content=body_of({"n": 2}), headers=bare).status_code == 202
    replay = http.post(hook["url"], content=body_of({"n": 2}), headers=bare)
    assert replay.json()["status"] == "duplicate"
    workflow_id = uuid.UUID(hook["workflow_id"])
    assert len(runs_of(database, uuid.UUID(owner.workspace_id), workflow_id)) == 2


def test_oversized_wrong_type_and_unparseable_bodies_are_refused(
    http: httpx.Client, owner: Session, database: Database
) -> None:
    hook = _deployed(http, owner, webhook())
    before = _stored(database, owner)
    large = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    too_large = http.post(hook["url"], content=large, headers=signed(hook["secret"], large))
    assert too_large.status_code == 413
    text = b"hello"
    wrong_type = http.post(
        hook["url"],
        content=text,
        headers={**signed(hook["secret"], text), "Content-Type": "text/plain"},
    )
    assert wrong_type.status_code == 415
    assert "accepts application/json" in wrong_type.json()["error"]["message"]
    broken = b'{"a": '
    not_json = http.post(hook["url"], content=broken, headers=signed(hook["secret"], broken))
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_body"
    nan = b'{"a": NaN}'
    assert (
        http.post(hook["url"], content=nan, headers=signed(hook["secret"], nan)).status_code == 400
    )
    assert _stored(database, owner) == before


def test_a_form_trigger_takes_forms(http: httpx.Client, owner: Session, database: Database) -> None:
    hook = _deployed(http, owner, webhook(content_type="application/x-www-form-urlencoded"))
    body = b"name=ada&tag=a&tag=b"
    headers = {**signed(hook["secret"], body), "Content-Type": "application/x-www-form-urlencoded"}
    response = http.post(hook["url"], content=body, headers=headers)
    assert response.status_code == 202, response.text
    run = wait_finished(
        database, uuid.UUID(owner.workspace_id), uuid.UUID(response.json()["run_id"])
    )
    assert run["output"]["body"] == {"name": "ada", "tag": ["a", "b"]}


def test_unknown_and_undeployed_triggers_answer_404_and_store_nothing(
    http: httpx.Client, owner: Session, database: Database
) -> None:
    hook = _deployed(http, owner, webhook())
    undeployed = http.post(f"/v1/workflows/{hook['workflow_id']}/undeploy", headers=owner.headers)
    assert undeployed.status_code == 200
    assert undeployed.json()["state"] == "undeployed"
    body = body_of({"a": 1})
    before = _stored(database, owner)
    for url in (hook["url"], f"/v1/hooks/{uuid.uuid4()}", "/v1/hooks/not-a-trigger"):
        response = http.post(url, content=body, headers=signed(hook["secret"], body))
        assert response.status_code == 404, (url, response.text)
        assert response.json()["error"]["code"] == "not_found"
    assert _stored(database, owner) == before


def test_sync_mode_answers_with_the_runs_output(http: httpx.Client, owner: Session) -> None:
    hook = _deployed(http, owner, webhook(response_mode="sync", sync_timeout_seconds=10))
    body = body_of({"q": "ping"})
    response = http.post(hook["url"], content=body, headers=signed(hook["secret"], body))
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["status"] == "finished" and reply["run_status"] == "SUCCESS"
    assert reply["output"]["body"] == {"q": "ping"}


def test_github_deliveries_are_verified_filtered_and_deduplicated(
    http: httpx.Client, owner: Session, database: Database
) -> None:
    hook = _deployed(
        http, owner, {"subtype": "GITHUB", "parameters": {"events": ["issues.opened", "push"]}}
    )
    secret = hook["secret"]
    opened = body_of({"action": "opened", "issue": {"number": 7}})
    ok = http.post(
        hook["url"], content=opened, headers=github_headers(secret, opened, "issues", "g1")
    )
    assert ok.status_code == 202, ok.text
    run = wait_finished(database, uuid.UUID(owner.workspace_id), uuid.UUID(ok.json()["run_id"]))
    assert run["output"]["event"] == "issues" and run["output"]["action"] == "opened"
    assert run["output"]["payload"]["issue"]["number"] == 7
    redelivered = http.post(
        hook["url"], content=opened, headers=github_headers(secret, opened, "issues", "g1")
    )
    assert redelivered.json()["status"] == "duplicate"
    closed = body_of({"action": "closed"})
    ignored = http.post(
        hook["url"], content=closed, headers=github_headers(secret, closed, "issues", "g2")
    )
    assert ignored.status_code == 200 and ignored.json() == {
        "status": "ignored",
        "event": "issues.closed",
    }
    ping = http.post(
        hook["url"], content=b"{}", headers=github_headers(secret, b"{}", "ping", "g3")
    )
    assert ping.json() == {"status": "pong"}
    forged = http.post(
        hook["url"], content=opened, headers=github_headers("x" * 64, opened, "issues", "g4")
    )
    assert forged.status_code == 401
    assert (
        len(runs_of(database, uuid.UUID(owner.workspace_id), uuid.UUID(hook["workflow_id"]))) == 1
    )


def test_slack_challenge_events_and_signatures(
    http: httpx.Client, owner: Session, database: Database
) -> None:
    signing_secret = "8f742231b10e8888abcd99yyyzzz85a5"
    credential = http.post(
        "/v1/credentials",
        json={"name": "slack", "type": "webhook_secret", "data": {"secret": signing_secret}},
        headers=owner.headers,
    )
    assert credential.status_code == 201, credential.text
    parameters = {
        "signing_secret_credential": credential.json()["id"],
        "event_types": ["app_mention"],
    }
    hook = _deployed(http, owner, {"subtype": "SLACK", "parameters": parameters})
    assert hook["secret"] == ""  # Slack's secret is the credential's, never shown

    challenge = body_of({"type": "url_verification", "challenge": "3eZbrw1aB"})
    answered = http.post(
        hook["url"], content=challenge, headers=slack_headers(signing_secret, challenge)
    )
    assert answered.status_code == 200 and answered.json() == {"challenge": "3eZbrw1aB"}

    mention = body_of({"type": "event_callback", "event_id": "Ev1", "team_id": "T1",
                       "event": {"type": "app_mention", "text": "hi"}})  # fmt: skip
    started = http.post(
        hook["url"], content=mention, headers=slack_headers(signing_secret, mention)
    )
    assert started.status_code == 202, started.text
    run = wait_finished(
        database, uuid.UUID(owner.workspace_id), uuid.UUID(started.json()["run_id"])
    )
    assert run["output"]["event_type"] == "app_mention" and run["output"]["event_id"] == "Ev1"

    retry = http.post(hook["url"], content=mention, headers=slack_headers(signing_secret, mention))
    assert retry.json()["status"] == "duplicate"
    message = body_of({"type": "event_callback", "event_id": "Ev2", "event": {"type": "message"}})
    skipped = http.post(
        hook["url"], content=message, headers=slack_headers(signing_secret, message)
    )
    assert skipped.json() == {"status": "ignored", "event_type": "message"}
    stale = slack_headers(signing_secret, mention, now=time.time() - 400)
    assert http.post(hook["url"], content=mention, headers=stale).status_code == 401


def test_a_flood_is_limited_per_trigger_with_retry_after(
    database: Database, engine_api: ApiServer, tmp_path: Path
) -> None:
    settings = test_settings(tmp_path, webhook_rate_limit_per_minute=3)
    engine = engine_api.app.state.dispatcher
    with (
        start_api_server(database, settings, dispatcher=engine) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as client,
    ):
        owner = signup(client)
        hook = _deployed(client, owner, webhook())
        other = _deployed(client, owner, webhook())
        codes = []
        for i in range(5):
            body = body_of({"i": i})
            sent = client.post(hook["url"], content=body, headers=signed(hook["secret"], body))
            codes.append(sent.status_code)
        limited = client.post(hook["url"], content=body, headers=signed(hook["secret"], body))
        fine = client.post(other["url"], content=body, headers=signed(other["secret"], body))
    assert codes == [202, 202, 202, 429, 429]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    assert fine.status_code == 202
