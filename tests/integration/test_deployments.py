"""Deploying and undeploying workflows: idempotent, followed by publishing, visible on the
workflow; trigger secrets issued once; every route scoped to its workspace."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.utils.api import Session, join_workspace, signup
from tests.utils.triggers import body_of, create, cron, deploy, flow, signed, trigger_t, webhook


@pytest.fixture
def owner(http: httpx.Client) -> Session:
    return signup(http)


def _triggers(http: httpx.Client, owner: Session, workflow_id: str) -> dict[str, dict[str, Any]]:
    response = http.get(f"/v1/workflows/{workflow_id}/triggers", headers=owner.headers)
    assert response.status_code == 200, response.text
    return {t["node_id"]: t for t in response.json()}


def _two_triggers() -> dict[str, Any]:
    definition = flow(cron("0 9 * * MON-FRI", timezone="Europe/Paris"))
    definition["nodes"].append({"id": "hook", "type": "TRIGGER", **webhook()})
    definition["edges"].append({"from": "hook", "to": "out"})
    return definition


def test_deploy_and_undeploy_are_idempotent(http: httpx.Client, owner: Session) -> None:
    workflow_id = create(http, owner.headers, _two_triggers())
    first = deploy(http, owner.headers, workflow_id)
    second = deploy(http, owner.headers, workflow_id)
    assert first["state"] == second["state"] == "deployed"
    assert first["version"] == second["version"] == 1
    assert first["deployed_at"] == second["deployed_at"]
    by_node = {t["node_id"]: t for t in first["triggers"]}
    again = {t["node_id"]: t for t in second["triggers"]}
    assert set(by_node) == {"t", "hook"}  # MANUAL is never bound
    assert {n: t["id"] for n, t in by_node.items()} == {n: t["id"] for n, t in again.items()}
    assert by_node["t"]["schedule"]["cron"] == "0 9 * * MON-FRI"
    assert by_node["t"]["schedule"]["next_fire_at"] == again["t"]["schedule"]["next_fire_at"]
    assert by_node["hook"]["secret"] and by_node["hook"]["secret_status"] == "generated"
    assert again["hook"]["secret"] is None  # shown once
    assert by_node["hook"]["url"].endswith(f"/v1/hooks/{by_node['hook']['id']}")

    detail = http.get(f"/v1/workflows/{workflow_id}", headers=owner.headers).json()
    assert detail["deployment"]["state"] == "deployed"
    assert detail["deployment"]["concurrency_policy"] == "allow"

    for _ in range(2):
        off = http.post(f"/v1/workflows/{workflow_id}/undeploy", headers=owner.headers)
        assert off.status_code == 200, off.text
        assert off.json()["state"] == "undeployed" and off.json()["version"] is None
    listed = _triggers(http, owner, workflow_id)
    assert not any(t["active"] for t in listed.values())
    assert all(t["schedule"] is None for t in listed.values())
    assert all(t["secret"] is None for t in listed.values())

    back = {t["node_id"]: t for t in deploy(http, owner.headers, workflow_id)["triggers"]}
    assert back["hook"]["id"] == by_node["hook"]["id"] and back["hook"]["secret"] is None


def test_publishing_a_new_version_redeploys(http: httpx.Client, owner: Session) -> None:
    definition = flow(webhook())
    workflow_id = create(http, owner.headers, definition)
    deploy(http, owner.headers, workflow_id, concurrency_policy="skip", lease_ttl_seconds=120)
    definition["nodes"][0] = {"id": "t", "type": "TRIGGER", **cron("@hourly")}
    definition["nodes"].append({"id": "hook2", "type": "TRIGGER", **webhook()})
    definition["edges"].append({"from": "hook2", "to": "out"})
    saved = http.put(
        f"/v1/workflows/{workflow_id}",
        json={"name": definition["name"], "definition": definition},
        headers=owner.headers,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["deployment"]["version"] == 2
    assert saved.json()["deployment"]["concurrency_policy"] == "skip"
    assert saved.json()["deployment"]["lease_ttl_seconds"] == 120
    listed = _triggers(http, owner, workflow_id)
    assert listed["t"]["subtype"] == "CRON" and listed["t"]["schedule"]["cron"] == "@hourly"
    assert listed["t"]["secret_status"] is None  # its generated secret went with the webhook
    assert listed["hook2"]["active"] and listed["hook2"]["secret_status"] == "pending"

    issued = http.post(f"/v1/workflows/{workflow_id}/triggers/hook2/secret", headers=owner.headers)
    assert issued.status_code == 200, issued.text
    assert issued.json()["secret"] and issued.json()["secret_status"] == "generated"

    # Publishing an older version follows too: the webhook node is unbound again.
    back = http.post(
        f"/v1/workflows/{workflow_id}/publish", json={"version": 1}, headers=owner.headers
    )
    assert back.status_code == 200 and back.json()["deployment"]["version"] == 1
    listed = _triggers(http, owner, workflow_id)
    assert listed["t"]["subtype"] == "WEBHOOK" and not listed["hook2"]["active"]


def test_a_rotated_secret_replaces_the_old_one_at_once(http: httpx.Client, owner: Session) -> None:
    workflow_id = create(http, owner.headers, flow(webhook()))
    hook = trigger_t(deploy(http, owner.headers, workflow_id))
    rotated = http.post(f"/v1/workflows/{workflow_id}/triggers/t/secret", headers=owner.headers)
    new_secret = rotated.json()["secret"]
    assert new_secret and new_secret != hook["secret"]
    body = body_of({"a": 1})
    old = http.post(hook["url"], content=body, headers=signed(hook["secret"], body))
    assert old.status_code == 401
    assert http.post(hook["url"], content=body, headers=signed(new_secret, body)).status_code == 202


def test_bad_trigger_parameters_are_refused_with_their_place(
    http: httpx.Client, owner: Session
) -> None:
    bad_cron = flow(cron("0 25 * * *", timezone="Atlantis/Capital"))
    saved = http.post(
        "/v1/workflows", json={"name": "bad", "definition": bad_cron}, headers=owner.headers
    )
    assert saved.status_code == 422
    problems = {p["path"]: p["message"] for p in saved.json()["error"]["details"]}
    assert "out of range" in problems["nodes[0].parameters.cron"]
    assert "not a known time zone" in problems["nodes[0].parameters.timezone"]

    slack = flow(
        {"subtype": "SLACK", "parameters": {"signing_secret_credential": str(uuid.uuid4())}}
    )
    workflow_id = create(http, owner.headers, slack)
    refused = http.post(f"/v1/workflows/{workflow_id}/deploy", headers=owner.headers)
    assert refused.status_code == 422
    [problem] = refused.json()["error"]["details"]
    assert problem["path"] == "nodes[0].parameters.signing_secret_credential"
    assert "not a webhook_secret" in problem["message"]
    state = http.get(f"/v1/workflows/{workflow_id}", headers=owner.headers).json()["deployment"]
    assert state["state"] == "undeployed"


def test_a_deleted_workflow_stops_receiving(http: httpx.Client, owner: Session) -> None:
    workflow_id = create(http, owner.headers, flow(webhook()))
    hook = trigger_t(deploy(http, owner.headers, workflow_id))
    assert http.delete(f"/v1/workflows/{workflow_id}", headers=owner.headers).status_code == 204
    body = body_of({})
    assert (
        http.post(hook["url"], content=body, headers=signed(hook["secret"], body)).status_code
        == 404
    )


def test_trigger_routes_are_scoped_to_the_callers_workspace(
    http: httpx.Client, owner: Session
) -> None:
    workflow_id = create(http, owner.headers, flow(webhook()))
    deploy(http, owner.headers, workflow_id)
    intruder = signup(http)
    for method, path in (
        ("POST", f"/v1/workflows/{workflow_id}/deploy"),
        ("POST", f"/v1/workflows/{workflow_id}/undeploy"),
        ("GET", f"/v1/workflows/{workflow_id}/triggers"),
        ("POST", f"/v1/workflows/{workflow_id}/triggers/t/secret"),
    ):
        response = http.request(method, path, headers=intruder.headers)
        assert response.status_code == 404, (method, path, response.text)
    state = http.get(f"/v1/workflows/{workflow_id}", headers=owner.headers).json()["deployment"]
    assert state["state"] == "deployed"


def test_a_viewer_sees_triggers_but_cannot_deploy(http: httpx.Client, owner: Session) -> None:
    workflow_id = create(http, owner.headers, flow(webhook()))
    deploy(http, owner.headers, workflow_id)
    viewer = join_workspace(http, owner, "viewer")
    assert (
        http.get(f"/v1/workflows/{workflow_id}/triggers", headers=viewer.headers).status_code == 200
    )
    for path in ("deploy", "undeploy", "triggers/t/secret"):
        response = http.post(f"/v1/workflows/{workflow_id}/{path}", headers=viewer.headers)
        assert response.status_code == 403, (path, response.text)
