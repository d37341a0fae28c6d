"""The workflows and runs contract, over real HTTP against the real database and engine."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from loom.nodes import registry
from loom.nodes.base import NodeSpec, ParametersModel
from loom.workflows.definition import NodeType
from tests.utils.api import Session, signup
from tests.utils.engine import example


@pytest.fixture
def me(http: httpx.Client) -> Session:
    return signup(http)


def _create(http: httpx.Client, me: Session, name: str = "wf", definition: Any = None) -> str:
    body = {"name": name, "definition": definition or example("transform")}
    response = http.post("/v1/workflows", json=body, headers=me.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _wait_finished(http: httpx.Client, me: Session, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = http.get(f"/v1/runs/{run_id}", headers=me.headers).json()
        if run["status"] in ("SUCCESS", "ERROR", "CANCELLED"):
            return dict(run)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def test_create_get_update_publish_and_versions(http: httpx.Client, me: Session) -> None:
    created = http.post(
        "/v1/workflows",
        headers=me.headers,
        json={"name": "Greeter", "definition": example("transform")},
    )
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["version"], body["live_version"]) == ("Greeter", 1, 1)
    assert body["definition"]["nodes"][1]["id"] == "shape"
    changed = copy.deepcopy(example("transform"))
    changed["nodes"][1]["parameters"]["value"] = {"hello": "{% $input.name %}"}
    updated = http.put(
        f"/v1/workflows/{body['id']}",
        headers=me.headers,
        json={"name": "Greeter", "definition": changed, "publish": False},
    )
    assert (updated.json()["version"], updated.json()["live_version"]) == (2, 1)
    versions = http.get(f"/v1/workflows/{body['id']}/versions", headers=me.headers).json()
    assert [v["version"] for v in versions] == [1, 2]
    diff = http.get(f"/v1/workflows/{body['id']}/diff?from=1&to=2", headers=me.headers).json()
    assert list(diff["nodes_changed"]) == ["shape"]
    published = http.post(
        f"/v1/workflows/{body['id']}/publish", headers=me.headers, json={"version": 2}
    )
    assert published.json()["live_version"] == 2
    listed = http.get("/v1/workflows", headers=me.headers).json()
    assert [w["id"] for w in listed["items"]] == [body["id"]]
    assert http.delete(f"/v1/workflows/{body['id']}", headers=me.headers).status_code == 204
    assert http.get(f"/v1/workflows/{body['id']}", headers=me.headers).status_code == 404


def test_invalid_definition_lists_every_problem(http: httpx.Client, me: Session) -> None:
    broken = example("transform")
    broken["nodes"].append({"id": "x", "type": "ACTION", "subtype": "NOPE"})
    broken["edges"].append({"from": "shape", "to": "ghost"})
    response = http.post(
        "/v1/workflows", headers=me.headers, json={"name": "bad", "definition": broken}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    paths = {d["path"] for d in error["details"]}
    assert {"nodes[2].subtype", "edges[1].to"} <= paths
    assert http.get("/v1/workflows", headers=me.headers).json()["items"] == []


def test_start_a_run_and_read_it_finished(http: httpx.Client, me: Session) -> None:
    flow = _create(http, me)
    started = http.post(
        f"/v1/workflows/{flow}/runs",
        headers=me.headers,
        json={"input": {"customer": {"name": "ada"}, "lines": [{"price": 2, "qty": 3}]}},
    )
    assert started.status_code == 202
    run = _wait_finished(http, me, started.json()["run_id"])
    assert run["status"] == "SUCCESS"
    assert run["output"]["customer"] == "ADA" and run["output"]["total"] == 6
    assert {n["node_id"]: n["status"] for n in run["nodes"]} == {
        "start": "completed",
        "shape": "completed",
    }
    listed = http.get(f"/v1/runs?workflow_id={flow}&status=SUCCESS", headers=me.headers).json()
    assert [r["id"] for r in listed["items"]] == [run["id"]]


def test_runs_list_pages_newest_first_and_filters(http: httpx.Client, me: Session) -> None:
    flow, other = _create(http, me, "listed"), _create(http, me, "not listed")
    started = [
        http.post(
            f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {"n": n}}
        ).json()["run_id"]
        for n in range(3)
    ]
    http.post(f"/v1/workflows/{other}/runs", headers=me.headers, json={"input": {}})
    for run_id in started:
        _wait_finished(http, me, run_id)
    query: dict[str, str | int] = {"workflow_id": flow, "limit": 2}
    first = http.get("/v1/runs", params=query, headers=me.headers).json()
    assert [r["id"] for r in first["items"]] == started[:0:-1], "newest first"
    assert first["next_before"] == first["items"][-1]["created_at"]
    rest = http.get(
        "/v1/runs", params={**query, "before": first["next_before"]}, headers=me.headers
    ).json()
    assert [r["id"] for r in rest["items"]] == started[:1] and rest["next_before"] is None
    for status, expected in (("SUCCESS", 3), ("RUNNING", 0)):
        found = http.get(
            "/v1/runs", params={"workflow_id": flow, "status": status}, headers=me.headers
        ).json()["items"]
        assert len(found) == expected, status
    assert len(http.get("/v1/runs", headers=me.headers).json()["items"]) == 4
    assert http.get("/v1/runs", headers=signup(http).headers).json()["items"] == []


def test_idempotency_key_starts_one_run(http: httpx.Client, me: Session) -> None:
    flow = _create(http, me)
    headers = {**me.headers, "Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = http.post(f"/v1/workflows/{flow}/runs", headers=headers, json={"input": {}})
    second = http.post(f"/v1/workflows/{flow}/runs", headers=headers, json={"input": {}})
    assert first.json()["run_id"] == second.json()["run_id"]
    assert (first.json()["created"], second.json()["created"]) == (True, False)
    runs = http.get(f"/v1/runs?workflow_id={flow}", headers=me.headers).json()["items"]
    assert len(runs) == 1


def _start_together(
    base_url: httpx.URL, path: str, headers: dict[str, str], ready: threading.Barrier
) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=30) as own:
        own.get("/v1/public/health")  # connected before the race starts
        ready.wait(timeout=30)
        response = own.post(path, headers=headers, json={"input": {}})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def test_concurrent_starts_with_one_idempotency_key_make_one_run(
    http: httpx.Client, me: Session
) -> None:
    clients = 12
    ready = threading.Barrier(clients)
    for _ in range(3):  # a few rounds: the interleavings differ from one to the next
        flow = _create(http, me)
        headers = {**me.headers, "Idempotency-Key": f"order-{uuid.uuid4()}"}
        path = f"/v1/workflows/{flow}/runs"
        with ThreadPoolExecutor(max_workers=clients) as pool:
            futures = [
                pool.submit(_start_together, http.base_url, path, headers, ready)
                for _ in range(clients)
            ]
            answers = [f.result() for f in futures]
        assert len({a["run_id"] for a in answers}) == 1
        assert sorted(a["created"] for a in answers) == [False] * (clients - 1) + [True]
        runs = http.get(f"/v1/runs?workflow_id={flow}", headers=me.headers).json()["items"]
        assert len(runs) == 1


def test_events_as_json_pages_and_as_server_sent_events(http: httpx.Client, me: Session) -> None:
    flow = _create(http, me, definition=example("parallel_merge"))
    run_id = http.post(
        f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {"n": 2}}
    ).json()["run_id"]
    with http.stream("GET", f"/v1/runs/{run_id}/events", headers=me.headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        names = [
            line.split(": ", 1)[1] for line in stream.iter_lines() if line.startswith("event: ")
        ]
    assert names[0] == "run_created" and names[-2:] == ["run_success", "end"]
    page = http.get(f"/v1/runs/{run_id}/events?after=0", headers=me.headers).json()
    assert [e["type"] for e in page["events"]] == names[:-1]
    assert page["finished"] is True
    later = http.get(f"/v1/runs/{run_id}/events?after={page['next_after']}", headers=me.headers)
    assert later.json() == {"events": [], "next_after": page["next_after"], "finished": True}


def test_a_stream_resumes_after_its_last_event_id(http: httpx.Client, me: Session) -> None:
    flow = _create(http, me, definition=example("parallel_merge"))
    run_id = http.post(
        f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {"n": 2}}
    ).json()["run_id"]
    deadline = time.monotonic() + 30
    page = http.get(f"/v1/runs/{run_id}/events?after=0", headers=me.headers).json()
    while not page["finished"]:
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.05)
        page = http.get(f"/v1/runs/{run_id}/events?after=0", headers=me.headers).json()
    seqs = [e["seq"] for e in page["events"]]
    middle = seqs[len(seqs) // 2]
    resumed = {**me.headers, "Last-Event-ID": str(middle)}
    with http.stream("GET", f"/v1/runs/{run_id}/events", headers=resumed) as stream:
        lines = list(stream.iter_lines())
    assert [int(line[4:]) for line in lines if line.startswith("id: ")] == [
        s for s in seqs if s > middle
    ]
    assert lines.count("event: end") == 1


def test_cancel_and_rerun(http: httpx.Client, me: Session) -> None:
    flow = _create(http, me, definition=example("wait"))
    run_id = http.post(
        f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {"seconds": 60}}
    ).json()["run_id"]
    time.sleep(0.3)
    cancelled = http.post(f"/v1/runs/{run_id}/cancel", headers=me.headers)
    assert cancelled.json()["status"] == "CANCELLED"
    assert _wait_finished(http, me, run_id)["status"] == "CANCELLED"
    rerun = http.post(f"/v1/runs/{run_id}/rerun", headers=me.headers, json={"from_node": "pause"})
    assert rerun.status_code == 202
    again = rerun.json()["run_id"]
    time.sleep(0.3)
    nodes = {
        n["node_id"]: n for n in http.get(f"/v1/runs/{again}", headers=me.headers).json()["nodes"]
    }
    assert nodes["start"]["reused_from"] is not None and nodes["pause"]["status"] == "running"
    assert http.post(f"/v1/runs/{again}/cancel", headers=me.headers).json()["status"] == "CANCELLED"
    bad = http.post(f"/v1/runs/{run_id}/rerun", headers=me.headers, json={"from_node": "nope"})
    assert bad.status_code == 422


def test_node_catalogue(http: httpx.Client, me: Session) -> None:
    catalogue = http.get("/v1/nodes", headers=me.headers).json()
    kinds = {(n["type"], n["subtype"]) for n in catalogue["node_types"]}
    assert {("FLOW", "LOOP"), ("ACTION", "TRANSFORM"), ("TRIGGER", "MANUAL")} <= kinds


def test_the_served_catalogue_follows_the_registered_specs(http: httpx.Client, me: Session) -> None:
    """The catalogue is rendered once and kept, until the registered specs change."""

    def kinds() -> set[tuple[str, str]]:
        listed = http.get("/v1/nodes", headers=me.headers).json()["node_types"]
        return {(n["type"], n["subtype"]) for n in listed}

    before = kinds()
    spec = registry.register(
        NodeSpec(
            type=NodeType.ACTION,
            subtype="CATALOGUE_PROBE",
            description="Registered by a test.",
            parameters=ParametersModel,
        )
    )
    try:
        assert kinds() == before | {("ACTION", "CATALOGUE_PROBE")}
    finally:
        del registry._SPECS[spec.key]
    assert kinds() == before


def test_another_workspace_sees_404_and_changes_nothing(http: httpx.Client, me: Session) -> None:
    flow = _create(http, me)
    run_id = http.post(f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {}}).json()[
        "run_id"
    ]
    _wait_finished(http, me, run_id)
    other = signup(http)
    attempts: list[tuple[str, str, Any]] = [
        ("GET", f"/v1/workflows/{flow}", None),
        ("PUT", f"/v1/workflows/{flow}", {"name": "x", "definition": example("transform")}),
        ("DELETE", f"/v1/workflows/{flow}", None),
        ("GET", f"/v1/workflows/{flow}/versions", None),
        ("POST", f"/v1/workflows/{flow}/publish", {"version": 1}),
        ("POST", f"/v1/workflows/{flow}/runs", {"input": {}}),
        ("GET", f"/v1/runs/{run_id}", None),
        ("GET", f"/v1/runs/{run_id}/events?after=0", None),
        ("POST", f"/v1/runs/{run_id}/cancel", None),
        ("POST", f"/v1/runs/{run_id}/rerun", {"from_node": "shape"}),
    ]
    for method, url, body in attempts:
        response = http.request(method, url, headers=other.headers, json=body)
        assert response.status_code == 404, (method, url, response.status_code)
    mine = http.get(f"/v1/workflows/{flow}", headers=me.headers).json()
    assert (mine["version"], mine["name"]) == (1, "wf")
    assert (
        http.get(f"/v1/runs?workflow_id={flow}", headers=me.headers).json()["items"][0]["id"]
        == run_id
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"name": "x", "definition": ', 422),
        (json.dumps({"name": 5, "definition": []}), 422),
        (json.dumps({"name": "x", "definition": {}, "surprise": 1}), 422),
        (json.dumps({"name": "x" * 10_000, "definition": {}}), 422),
        (json.dumps({"name": "\u202e\u0000\ud7ff", "definition": {"nodes": "\ufeff"}}), 422),
    ],
)
def test_bad_bodies_get_one_error_shape(
    http: httpx.Client, me: Session, body: str, status: int
) -> None:
    response = http.post(
        "/v1/workflows",
        headers={**me.headers, "Content-Type": "application/json"},
        content=body.encode("utf-8", "surrogatepass"),
    )
    assert response.status_code == status
    assert set(response.json()["error"]) >= {"code", "message", "solution", "request_id"}
    assert http.get("/v1/workflows", headers=me.headers).json()["items"] == []


def test_nul_characters_are_refused_and_nothing_is_stored(http: httpx.Client, me: Session) -> None:
    named = http.post(
        "/v1/workflows",
        headers=me.headers,
        json={"name": "a\u0000b", "definition": example("transform")},
    )
    assert named.status_code == 422 and named.json()["error"]["code"] == "invalid_value"
    assert http.get("/v1/workflows", headers=me.headers).json()["items"] == []
    flow = _create(http, me)
    started = http.post(
        f"/v1/workflows/{flow}/runs", headers=me.headers, json={"input": {"note": "x\u0000y"}}
    )
    assert started.status_code == 422 and "input.note" in started.json()["error"]["message"]
    assert http.get(f"/v1/runs?workflow_id={flow}", headers=me.headers).json()["items"] == []
