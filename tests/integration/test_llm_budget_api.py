"""The monthly model budget in the workspace settings: admins set and remove it; the
gateway refuses a call that would cross it (tests/integration/test_llm_gateway.py)."""

from __future__ import annotations

import uuid

import httpx

from loom.db import Database
from loom.db.llm import admit
from tests.utils.api import join_workspace, signup

URL = "/v1/workspaces/current/settings"


def test_admins_set_change_and_remove_the_budget(client: httpx.Client, database: Database) -> None:
    owner = signup(client)
    client.put(URL, headers=owner.headers, json={"outbound_allowlist": ["keep.internal"]})
    assert "llm_budget" not in client.get(URL, headers=owner.headers).json()

    saved = client.put(URL, headers=owner.headers, json={"llm_budget": {"monthly_usd": 50}})
    assert saved.status_code == 200, saved.text
    expected = {
        "outbound_allowlist": ["keep.internal"],
        "llm_budget": {"monthly_usd": 50.0, "warn_percent": 80},
    }
    assert {k: saved.json()[k] for k in expected} == expected
    shown = client.get(URL, headers=owner.headers).json()
    assert {k: shown[k] for k in expected} == expected
    spend, _ = admit(database, uuid.UUID(owner.workspace_id), None, [], None)
    assert spend is not None and spend.budget == {"monthly_usd": 50.0, "warn_percent": 80}

    admin = join_workspace(client, owner, "admin")
    changed = client.put(
        URL, headers=admin.headers, json={"llm_budget": {"monthly_usd": 5, "warn_percent": 50}}
    )
    assert changed.json()["llm_budget"] == {"monthly_usd": 5.0, "warn_percent": 50}

    removed = client.put(URL, headers=owner.headers, json={"llm_budget": {"monthly_usd": None}})
    assert "llm_budget" not in removed.json()
    assert removed.json()["outbound_allowlist"] == ["keep.internal"]


def test_bad_budgets_and_non_admins_change_nothing(client: httpx.Client) -> None:
    owner = signup(client)
    client.put(URL, headers=owner.headers, json={"llm_budget": {"monthly_usd": 10}})
    for bad in ({"monthly_usd": -1}, {"monthly_usd": 1, "warn_percent": 0}, {"warn_percent": 50}):
        refused = client.put(URL, headers=owner.headers, json={"llm_budget": bad})
        assert refused.status_code == 422, bad
    editor = join_workspace(client, owner, "editor")
    forbidden = client.put(URL, headers=editor.headers, json={"llm_budget": {"monthly_usd": 1e6}})
    assert forbidden.status_code == 403
    assert client.put(URL, headers=editor.headers, json={}).status_code == 403
    assert client.get(URL, headers=editor.headers).json()["llm_budget"]["monthly_usd"] == 10.0
