"""Workspace settings: admins set the outbound allowlist; bad entries change nothing."""

from __future__ import annotations

import httpx

from tests.utils.api import join_workspace, signup

URL = "/v1/workspaces/current/settings"


def test_admins_set_a_normalised_allowlist(client: httpx.Client) -> None:
    owner = signup(client)
    assert client.get(URL, headers=owner.headers).json()["outbound_allowlist"] == []
    entries = ["Billing.Internal:8443", "10.0.4.7", "[fd00::1]:80", "billing.internal:8443"]
    saved = client.put(URL, headers=owner.headers, json={"outbound_allowlist": entries})
    assert saved.status_code == 200, saved.text
    expected = ["billing.internal:8443", "10.0.4.7", "[fd00::1]:80"]
    assert saved.json()["outbound_allowlist"] == expected
    assert client.get(URL, headers=owner.headers).json()["outbound_allowlist"] == expected

    admin = join_workspace(client, owner, "admin")
    cleared = client.put(URL, headers=admin.headers, json={"outbound_allowlist": []})
    assert cleared.status_code == 200 and cleared.json()["outbound_allowlist"] == []


def test_bad_entries_are_all_listed_and_nothing_changes(client: httpx.Client) -> None:
    owner = signup(client)
    client.put(URL, headers=owner.headers, json={"outbound_allowlist": ["keep.internal"]})
    bad = ["ok.internal", "host:99999", "http://x.internal/", "a b", "[::1"]
    refused = client.put(URL, headers=owner.headers, json={"outbound_allowlist": bad})
    assert refused.status_code == 422
    paths = [d["path"] for d in refused.json()["error"]["details"]]
    assert paths == [f"outbound_allowlist.{i}" for i in (1, 2, 3, 4)]
    assert client.get(URL, headers=owner.headers).json()["outbound_allowlist"] == ["keep.internal"]
    too_many = client.put(
        URL,
        headers=owner.headers,
        json={"outbound_allowlist": [f"h{i}.internal" for i in range(101)]},
    )
    assert too_many.status_code == 422


def test_editors_cannot_change_it_and_workspaces_stay_apart(client: httpx.Client) -> None:
    owner = signup(client)
    editor = join_workspace(client, owner, "editor")
    refused = client.put(URL, headers=editor.headers, json={"outbound_allowlist": ["x.internal"]})
    assert refused.status_code == 403
    assert client.get(URL, headers=editor.headers).json()["outbound_allowlist"] == []
    stranger = signup(client)
    client.put(URL, headers=stranger.headers, json={"outbound_allowlist": ["theirs.internal"]})
    assert client.get(URL, headers=owner.headers).json()["outbound_allowlist"] == []
