"""HUMAN_IN_THE_LOOP over the real API and engine: approvals and input forms, answered in
the app or through the one-time link a signed webhook carries, each timeout action, double
answers, cancelled runs, and what a save refuses."""

from __future__ import annotations

import json
import re
import time
from typing import Any
from uuid import uuid4

import httpx
import pytest

import tests.utils.test_nodes  # noqa: F401 - registers ACTION.TEST in this process
from loom import signing
from loom.db import Database
from tests.utils.api import (
    Session,
    allow_hosts,
    create_credential,
    join_workspace,
    signup,
)
from tests.utils.fake_services import FakeSlack, running
from tests.utils.loopback_http import LoopbackServer, Reply, Seen, serve
from tests.utils.smtp_server import serve_smtp

SECRET = "hil-webhook-secret-5d1c9e0b"
SLACK_TOKEN = "xoxb-hil-channel-7a2d9f"
SMTP_PASSWORD = "hil-smtp-password-3e8b1c"
FORM = {
    "type": "object",
    "required": ["amount", "reason"],
    "properties": {
        "amount": {"type": "integer", "minimum": 1},
        "reason": {"type": "string", "minLength": 3},
    },
    "additionalProperties": False,
}


@pytest.fixture
def me(http: httpx.Client) -> Session:
    return signup(http)


def _flow(ask: dict[str, Any], *, ports: tuple[str, ...] = ("approve", "reject")) -> dict[str, Any]:
    """start → ask → one ACTION.TEST per port, so the route taken is visible."""
    nodes = [
        {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"},
        {"id": "ask", "type": "HUMAN_IN_THE_LOOP", **ask},
    ]
    edges: list[dict[str, Any]] = [{"from": "start", "to": "ask"}]
    for port in ports:
        nodes.append({"id": f"on_{port}", "type": "ACTION", "subtype": "TEST"})
        edges.append({"from": "ask", "to": f"on_{port}", "port": port})
    return {"name": "ask", "nodes": nodes, "edges": edges}


def _start(http: httpx.Client, me: Session, definition: dict[str, Any]) -> str:
    saved = http.post(
        "/v1/workflows", headers=me.headers, json={"name": uuid4().hex, "definition": definition}
    )
    assert saved.status_code == 201, saved.text
    started = http.post(
        f"/v1/workflows/{saved.json()['id']}/runs", headers=me.headers, json={"input": {"x": 1}}
    )
    assert started.status_code == 202, started.text
    return str(started.json()["run_id"])


def _wait_run(http: httpx.Client, me: Session, run_id: str, *want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = http.get(f"/v1/runs/{run_id}", headers=me.headers).json()
        if run["status"] in want:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is {run.get('status')}, never {want}: {run}")


def _pending(http: httpx.Client, me: Session, run_id: str) -> dict[str, Any]:
    _wait_run(http, me, run_id, "WAITING_FOR_HUMAN")
    listed: list[dict[str, Any]] = http.get("/v1/hil?status=pending", headers=me.headers).json()
    found = [r for r in listed if r["run_id"] == run_id]
    assert len(found) == 1, found
    return found[0]


def _nodes(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node_id"]: n for n in run["nodes"]}


def _approval(**extra: Any) -> dict[str, Any]:
    return {"subtype": "APPROVAL", "parameters": {"title": "Ship it?", **extra}}


def _expire(database: Database, me: Session, request_id: str) -> None:
    """Move the deadline into the past: what 60 s of waiting would do, without the wait."""
    with database.tenant(me.workspace_id) as conn:
        conn.execute(
            "UPDATE hil_requests SET expires_at = now() - interval '1 second' WHERE id = %s",
            (request_id,),
        )


def test_approve_and_reject_take_their_ports(http: httpx.Client, me: Session) -> None:
    for approved, port, other in ((True, "approve", "reject"), (False, "reject", "approve")):
        run_id = _start(http, me, _flow(_approval(message="v2.1 to production")))
        request = _pending(http, me, run_id)
        assert request["kind"] == "approval" and request["channels"] == ["in_app"]
        assert request["request"]["title"] == "Ship it?"
        answer = http.post(
            f"/v1/hil/{request['id']}/respond",
            headers=me.headers,
            json={"approved": approved, "data": "looks fine"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == ("approved" if approved else "rejected")
        run = _wait_run(http, me, run_id, "SUCCESS")
        nodes = _nodes(run)
        assert nodes["ask"]["output_port"] == port
        assert nodes["ask"]["output"] == {
            "approved": approved,
            "data": "looks fine",
            "responded_by": me.user_id,
            "via": "member",
        }
        assert nodes[f"on_{port}"]["status"] == "completed"
        assert nodes[f"on_{other}"]["status"] == "skipped"


def test_input_is_validated_and_becomes_the_output(http: httpx.Client, me: Session) -> None:
    ask = {"subtype": "INPUT", "parameters": {"title": "Refund?", "form": FORM}}
    run_id = _start(http, me, _flow(ask, ports=("main",)))
    request = _pending(http, me, run_id)
    assert request["request"]["form"] == FORM
    url = f"/v1/hil/{request['id']}/respond"

    bad = http.post(url, headers=me.headers, json={"data": {"amount": 0, "extra": True}})
    assert bad.status_code == 422
    problems = {(d["path"], d["message"].split(" ")[0]) for d in bad.json()["error"]["details"]}
    assert {p for p, _ in problems} == {"data", "data.amount"}, "every problem is listed"
    assert len(bad.json()["error"]["details"]) == 3, bad.json()  # minimum, required, extra
    decision = http.post(url, headers=me.headers, json={"approved": True})
    assert decision.status_code == 422, "an input request takes data, not a decision"
    assert _pending(http, me, run_id)["id"] == request["id"], "a bad answer changes nothing"

    good = http.post(url, headers=me.headers, json={"data": {"amount": 40, "reason": "late"}})
    assert good.status_code == 200 and good.json()["status"] == "responded"
    run = _wait_run(http, me, run_id, "SUCCESS")
    assert _nodes(run)["ask"]["output"] == {"amount": 40, "reason": "late"}
    assert _nodes(run)["on_main"]["status"] == "completed"


def test_a_second_answer_is_a_conflict_and_changes_nothing(http: httpx.Client, me: Session) -> None:
    run_id = _start(http, me, _flow(_approval()))
    request = _pending(http, me, run_id)
    url = f"/v1/hil/{request['id']}/respond"
    assert http.post(url, headers=me.headers, json={"approved": False}).status_code == 200
    again = http.post(url, headers=me.headers, json={"approved": True})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    run = _wait_run(http, me, run_id, "SUCCESS")
    assert _nodes(run)["ask"]["output_port"] == "reject"
    stored = http.get("/v1/hil?status=rejected", headers=me.headers).json()
    assert [r["response"]["approved"] for r in stored if r["run_id"] == run_id] == [False]


def test_only_editors_and_up_answer(http: httpx.Client, me: Session) -> None:
    run_id = _start(http, me, _flow(_approval()))
    request = _pending(http, me, run_id)
    viewer = join_workspace(http, me, "viewer")
    url = f"/v1/hil/{request['id']}/respond"
    refused = http.post(url, headers=viewer.headers, json={"approved": True})
    assert refused.status_code == 403
    assert http.get("/v1/hil?status=pending", headers=viewer.headers).status_code == 200
    editor = join_workspace(http, me, "editor")
    answered = http.post(url, headers=editor.headers, json={"approved": True})
    assert answered.status_code == 200
    run = _wait_run(http, me, run_id, "SUCCESS")
    assert _nodes(run)["ask"]["output"]["responded_by"] == editor.user_id


@pytest.mark.parametrize(
    ("ask", "ports", "status", "port", "output"),
    [
        (_approval(timeout_seconds=60), ("approve", "reject"), "ERROR", None, None),
        (
            _approval(timeout_seconds=60, timeout_action="continue", default="approve"),
            ("approve", "reject"),
            "SUCCESS",
            "approve",
            {"approved": True, "data": None, "responded_by": None, "via": "timeout"},
        ),
        (
            {
                "subtype": "INPUT",
                "parameters": {
                    "title": "How much?",
                    "form": FORM,
                    "timeout_seconds": 3600,
                    "timeout_action": "continue",
                    "default": {"amount": 1, "reason": "default"},
                },
            },
            ("main",),
            "SUCCESS",
            "main",
            {"amount": 1, "reason": "default"},
        ),
        (
            _approval(timeout_seconds=86_400, timeout_action="route"),
            ("approve", "reject", "timeout"),
            "SUCCESS",
            "timeout",
            "timed_out",
        ),
    ],
    ids=["fail", "continue-approval", "continue-input", "route"],
)
def test_each_timeout_action(
    http: httpx.Client,
    me: Session,
    database: Database,
    ask: dict[str, Any],
    ports: tuple[str, ...],
    status: str,
    port: str | None,
    output: Any,
) -> None:
    run_id = _start(http, me, _flow(ask, ports=ports))
    request = _pending(http, me, run_id)
    _expire(database, me, request["id"])
    run = _wait_run(http, me, run_id, "SUCCESS", "ERROR")
    assert run["status"] == status
    ask_node = _nodes(run)["ask"]
    if port is None:
        assert ask_node["status"] == "failed"
        assert ask_node["error"]["code"] == "hil_timed_out"
    else:
        assert ask_node["output_port"] == port
        if output == "timed_out":
            assert ask_node["output"] == {"timed_out": True, "request_id": request["id"]}
        else:
            assert ask_node["output"] == output
        assert _nodes(run)[f"on_{port}"]["status"] == "completed"
    late = http.post(
        f"/v1/hil/{request['id']}/respond", headers=me.headers, json={"approved": True}
    )
    assert late.status_code in (409, 422), "a timed-out request takes no answer"
    timed_out = http.get("/v1/hil?status=timed_out", headers=me.headers).json()
    assert request["id"] in {r["id"] for r in timed_out}


def test_cancelling_the_run_withdraws_its_request(http: httpx.Client, me: Session) -> None:
    run_id = _start(http, me, _flow(_approval()))
    request = _pending(http, me, run_id)
    assert http.post(f"/v1/runs/{run_id}/cancel", headers=me.headers).status_code == 200
    _wait_run(http, me, run_id, "CANCELLED")
    listed = {r["id"]: r for r in http.get("/v1/hil", headers=me.headers).json()}
    assert listed[request["id"]]["status"] == "cancelled"
    late = http.post(
        f"/v1/hil/{request['id']}/respond", headers=me.headers, json={"approved": True}
    )
    assert late.status_code == 409


class _Receiver:
    """A webhook receiver on 127.0.0.1 that checks Loom's signature like a user's would."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.deliveries: list[dict[str, Any]] = []
        self.verified: list[bool] = []

    def __call__(self, seen: Seen) -> Reply:
        try:
            signing.verify(SECRET.encode(), seen.body, seen.headers.get("x-loom-signature"))
            self.verified.append(True)
        except signing.SignatureInvalid:
            self.verified.append(False)
        self.deliveries.append(json.loads(seen.body))
        return Reply(status=self.status)


def _webhook_workspace(http: httpx.Client, me: Session, server: LoopbackServer) -> dict[str, Any]:
    allow_hosts(http, me, server.where)
    secret = create_credential(http, me, "webhook_secret", {"secret": SECRET})
    return {"type": "webhook", "url": server.url("/hil"), "secret_credential_id": secret}


def test_signed_webhook_carries_a_one_time_link(http: httpx.Client, me: Session) -> None:
    receiver = _Receiver()
    with serve(receiver) as server:
        channel = _webhook_workspace(http, me, server)
        ask = {
            "subtype": "INPUT",
            "parameters": {
                "title": "Refund?",
                "form": FORM,
                "channels": [{"type": "in_app"}, channel],
            },
        }
        run_id = _start(http, me, _flow(ask, ports=("main",)))
        request = _pending(http, me, run_id)
    assert receiver.verified == [True], "the delivery is signed with the workspace's secret"
    delivery = receiver.deliveries[0]
    assert delivery["request_id"] == request["id"] and delivery["form"] == FORM
    assert request["channels"] == ["in_app", "webhook"]
    link = httpx.URL(delivery["respond_url"]).path
    token = link.split("/")[-2]
    assert token not in json.dumps(request), "the link is not shown in the app's listing"

    viewed = http.get(f"/v1/public/hil/{token}")
    assert viewed.status_code == 200
    assert viewed.json()["title"] == "Refund?" and viewed.json()["status"] == "pending"
    wrong = http.post(link, json={"data": {"amount": "ten"}})
    assert wrong.status_code == 422
    answered = http.post(link, json={"data": {"amount": 10, "reason": "damaged"}})
    assert answered.status_code == 200, answered.text
    run = _wait_run(http, me, run_id, "SUCCESS")
    assert _nodes(run)["ask"]["output"] == {"amount": 10, "reason": "damaged"}
    assert http.post(link, json={"data": {"amount": 11, "reason": "again"}}).status_code == 409
    assert http.get(f"/v1/public/hil/{token}").json()["status"] == "responded"
    assert http.get(f"/v1/public/hil/{'x' * 43}").status_code == 404
    assert http.post(f"/v1/public/hil/{'x' * 43}/respond", json={}).status_code == 404


def test_an_undeliverable_request_is_withdrawn_and_the_node_fails(
    http: httpx.Client, me: Session
) -> None:
    receiver = _Receiver(status=500)
    with serve(receiver) as server:
        channel = _webhook_workspace(http, me, server)
        run_id = _start(http, me, _flow(_approval(channels=[channel])))
        run = _wait_run(http, me, run_id, "ERROR")
    assert len(receiver.deliveries) == 1
    assert _nodes(run)["ask"]["error"]["code"] == "hil_delivery_failed"
    listed = [r for r in http.get("/v1/hil", headers=me.headers).json() if r["run_id"] == run_id]
    assert [r["status"] for r in listed] == ["cancelled"]


def test_a_webhook_to_a_host_not_allowlisted_is_refused(http: httpx.Client, me: Session) -> None:
    receiver = _Receiver()
    with serve(receiver) as server:
        secret = create_credential(http, me, "webhook_secret", {"secret": SECRET})
        channel = {"type": "webhook", "url": server.url("/hil"), "secret_credential_id": secret}
        run_id = _start(http, me, _flow(_approval(channels=[channel])))
        run = _wait_run(http, me, run_id, "ERROR")
    assert receiver.deliveries == [], "loopback is refused without an allowlist entry"
    assert _nodes(run)["ask"]["error"]["code"] == "outbound_blocked"


@pytest.mark.parametrize(
    ("parameters", "complaint"),
    [
        ({"title": "t", "timeout_seconds": 59}, "greater than or equal to 60"),
        ({"title": "t", "timeout_seconds": 30 * 86_400 + 1}, "less than or equal to 2592000"),
        ({"title": "t", "timeout_action": "continue"}, "needs a default"),
        ({"title": "t", "classify_free_text": True}, "not available yet"),
        ({"title": "t", "channels": [{"type": "pager"}]}, "pager"),
        ({"title": "", "timeout_seconds": 60}, "at least 1 character"),
    ],
)
def test_a_save_refuses_bad_approval_settings(
    http: httpx.Client, me: Session, parameters: dict[str, Any], complaint: str
) -> None:
    definition = _flow({"subtype": "APPROVAL", "parameters": parameters})
    refused = http.post(
        "/v1/workflows", headers=me.headers, json={"name": "bad", "definition": definition}
    )
    assert refused.status_code == 422
    assert complaint in refused.text


@pytest.mark.parametrize(
    ("parameters", "complaint"),
    [
        ({"title": "t", "form": {"type": "objekt"}}, "not a valid JSON Schema"),
        (
            {"title": "t", "form": FORM, "timeout_action": "continue", "default": {"amount": 1}},
            "default does not match the form",
        ),
    ],
)
def test_a_save_refuses_bad_forms(
    http: httpx.Client, me: Session, parameters: dict[str, Any], complaint: str
) -> None:
    definition = _flow({"subtype": "INPUT", "parameters": parameters}, ports=("main",))
    refused = http.post(
        "/v1/workflows", headers=me.headers, json={"name": "bad", "definition": definition}
    )
    assert refused.status_code == 422
    assert complaint in refused.text


def test_a_timeout_port_needs_timeout_action_route(http: httpx.Client, me: Session) -> None:
    definition = _flow(_approval(), ports=("approve", "reject", "timeout"))
    refused = http.post(
        "/v1/workflows", headers=me.headers, json={"name": "bad", "definition": definition}
    )
    assert refused.status_code == 422 and "timeout" in refused.text


def test_the_catalogue_marks_ai_classification_unavailable(http: httpx.Client, me: Session) -> None:
    specs = http.get("/v1/nodes", headers=me.headers).json()["node_types"]
    approval = next(s for s in specs if s["subtype"] == "APPROVAL")
    described = approval["parameters"]["properties"]["classify_free_text"]["description"]
    assert described.startswith("Unavailable")


def test_slack_and_email_carry_the_link_and_a_link_answer_counts(
    http: httpx.Client, me: Session
) -> None:
    with (
        running(FakeSlack(token=SLACK_TOKEN)) as slack,
        serve_smtp(users={"ada": SMTP_PASSWORD}) as mail,
    ):
        allow_hosts(http, me, slack.where, mail.where)
        bot = create_credential(http, me, "slack_bot", {"token": SLACK_TOKEN})
        smtp = create_credential(
            http,
            me,
            "smtp",
            {
                "host": "127.0.0.1",
                "port": mail.port,
                "username": "ada",
                "password": SMTP_PASSWORD,
                "starttls": False,
            },
        )
        channels = [
            {
                "type": "slack",
                "credential_id": bot,
                "channel": "C0123ABCD",
                "base_url": slack.url("/api"),
            },
            {
                "type": "email",
                "credential_id": smtp,
                "sender": "loom@example.com",
                "to": ["lead@example.com"],
            },
        ]
        run_id = _start(http, me, _flow(_approval(message="Refund 40 EUR", channels=channels)))
        request = _pending(http, me, run_id)
        assert request["channels"] == ["slack", "email"]
        posted = slack.body(0)
        assert posted["channel"] == "C0123ABCD" and "Ship it?" in posted["text"]
        [received] = mail.received
        message = received.message
        assert message["Subject"] == "[Loom] Ship it?" and received.rcpt_tos == ["lead@example.com"]
        body = message.get_content()
        slack_link = re.search(r"/v1/public/hil/[A-Za-z0-9_-]+", posted["text"])
        mail_link = re.search(r"/v1/public/hil/[A-Za-z0-9_-]+", body)
        assert slack_link and mail_link and slack_link.group(0) == mail_link.group(0)
        assert "Refund 40 EUR" in body

    answered = http.post(f"{slack_link.group(0)}/respond", json={"approved": False})
    assert answered.status_code == 200 and answered.json()["status"] == "rejected"
    run = _wait_run(http, me, run_id, "SUCCESS")
    assert _nodes(run)["ask"]["output"] == {
        "approved": False,
        "data": None,
        "responded_by": None,
        "via": "link",
    }
    in_app = http.post(
        f"/v1/hil/{request['id']}/respond", headers=me.headers, json={"approved": True}
    )
    assert in_app.status_code == 409, "the link's answer was the one answer"
