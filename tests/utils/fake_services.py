"""Fake Slack, GitHub and Notion APIs on real HTTP servers on 127.0.0.1.

Each is shaped after the service's public API: it checks the bearer token and the headers
the service requires, answers with the service's success and error bodies, and records
what it received (``server.seen``). A test can queue replies (``script``) to make the next
calls fail with 429, 5xx and the like.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from loom.errors import NotFound
from loom.secrets.types import CredentialData
from tests.utils.loopback_http import LoopbackServer, Reply, Seen, serve

JSON = {"Content-Type": "application/json; charset=utf-8"}


class FakeNodeServices:
    """What the engine lends a node: typed credentials by id, and an allowlist."""

    def __init__(
        self, allowlist: Sequence[str], credentials: Mapping[str, CredentialData] | None = None
    ) -> None:
        self._allowlist = list(allowlist)
        self._credentials = dict(credentials or {})

    async def credential(self, credential_id: str) -> Any:
        if credential_id not in self._credentials:
            raise NotFound(f"Credential {credential_id} not found in this workspace.")
        return self._credentials[credential_id]

    @property
    def outbound_allowlist(self) -> Sequence[str]:
        return self._allowlist


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(body).encode(), {**JSON, **(headers or {})})


@dataclass
class FakeApi:
    """What every fake shares: the token it accepts and the replies queued for it."""

    token: str
    script: list[Reply] = field(default_factory=list)
    server: LoopbackServer | None = None

    @property
    def live(self) -> LoopbackServer:
        assert self.server is not None, "use the fake inside running(...)"
        return self.server

    @property
    def where(self) -> str:
        return self.live.where

    def url(self, path: str = "") -> str:
        return self.live.url(path)

    @property
    def seen(self) -> list[Seen]:
        return self.live.seen

    def body(self, index: int = -1) -> Any:
        return json.loads(self.seen[index].body)

    def handle(self, seen: Seen) -> Reply:
        if self.script:
            return self.script.pop(0)
        return self.answer(seen)

    def answer(self, seen: Seen) -> Reply:
        raise NotImplementedError

    def authorised(self, seen: Seen) -> bool:
        return seen.headers.get("authorization") == f"Bearer {self.token}"


@contextmanager
def running(fake: FakeApi) -> Iterator[FakeApi]:
    with serve(fake.handle) as server:
        fake.server = server
        try:
            yield fake
        finally:
            fake.server = None


@dataclass
class FakeSlack(FakeApi):
    """``POST /api/chat.postMessage``; base URL ``url("/api")``. Slack answers failures
    with 200 and ``{"ok": false, "error": code}``."""

    channels: dict[str, str] = field(default_factory=lambda: {"C0123ABCD": "general"})
    not_member: frozenset[str] = frozenset({"C0999ZZZZ"})
    posted: int = 0

    def answer(self, seen: Seen) -> Reply:
        if seen.method != "POST" or seen.path != "/api/chat.postMessage":
            return json_reply(404, {"ok": False, "error": "unknown_method"})
        if "authorization" not in seen.headers:
            return json_reply(200, {"ok": False, "error": "not_authed"})
        if not self.authorised(seen):
            return json_reply(200, {"ok": False, "error": "invalid_auth"})
        body = json.loads(seen.body)
        if not body.get("text") and not body.get("blocks"):
            return json_reply(200, {"ok": False, "error": "no_text"})
        channel = self._channel(str(body.get("channel", "")))
        if channel is None:
            return json_reply(200, {"ok": False, "error": "channel_not_found"})
        if channel in self.not_member:
            return json_reply(200, {"ok": False, "error": "not_in_channel"})
        self.posted += 1
        ts = f"1700000000.{self.posted:06d}"
        message = {"type": "message", "text": body["text"], "user": "U0BOT", "bot_id": "B01"}
        message["ts"] = ts
        if "thread_ts" in body:
            message["thread_ts"] = body["thread_ts"]
        return json_reply(200, {"ok": True, "channel": channel, "ts": ts, "message": message})

    def _channel(self, given: str) -> str | None:
        if given in self.channels or given in self.not_member:
            return given
        by_name = {f"#{name}": cid for cid, name in self.channels.items()}
        return by_name.get(given)


GITHUB_DOCS = "https://docs.github.com/rest"


@dataclass
class FakeGitHub(FakeApi):
    """``POST /repos/{owner}/{repo}/issues`` and ``.../issues/{number}/comments``; base
    URL ``url()`` (or ``url("/api/v3")``, as GitHub Enterprise, which it also serves)."""

    repositories: frozenset[str] = frozenset({"acme/app"})
    issues: dict[int, str] = field(default_factory=lambda: {1: "An existing issue"})
    assignable: frozenset[str] = frozenset({"ada"})
    comments: int = 0

    def answer(self, seen: Seen) -> Reply:
        if not self.authorised(seen):
            return json_reply(
                401,
                {"message": "Bad credentials", "documentation_url": GITHUB_DOCS, "status": "401"},
            )
        parts = seen.path.removeprefix("/api/v3").strip("/").split("/")
        if seen.method != "POST" or parts[0] != "repos" or len(parts) < 4:
            return self._not_found()
        repository = f"{parts[1]}/{parts[2]}"
        if repository not in self.repositories or parts[3] != "issues":
            return self._not_found()
        body = json.loads(seen.body)
        if len(parts) == 4:
            return self._create_issue(repository, body)
        if len(parts) == 6 and parts[5] == "comments" and parts[4].isdigit():
            return self._comment(repository, int(parts[4]), body)
        return self._not_found()

    def _create_issue(self, repository: str, body: dict[str, Any]) -> Reply:
        if not body.get("title"):
            return self._invalid({"resource": "Issue", "code": "missing_field", "field": "title"})
        for login in body.get("assignees", []):
            if login not in self.assignable:
                error = {"value": login, "resource": "Issue", "field": "assignees"}
                return self._invalid({**error, "code": "invalid"})
        number = max(self.issues) + 1
        self.issues[number] = body["title"]
        api = self.url(f"/repos/{repository}/issues/{number}")
        return json_reply(
            201,
            {
                "id": 2_000_000 + number,
                "node_id": f"I_kwDO{number:08d}",
                "url": api,
                "html_url": f"https://github.com/{repository}/issues/{number}",
                "number": number,
                "state": "open",
                "title": body["title"],
                "body": body.get("body"),
                "labels": [{"name": name} for name in body.get("labels", [])],
                "user": {"login": "loom-bot"},
            },
        )

    def _comment(self, repository: str, number: int, body: dict[str, Any]) -> Reply:
        if number not in self.issues:
            return self._not_found()
        if not body.get("body"):
            return self._invalid(
                {"resource": "IssueComment", "code": "missing_field", "field": "body"}
            )
        self.comments += 1
        comment_id = 3_000_000 + self.comments
        return json_reply(
            201,
            {
                "id": comment_id,
                "node_id": f"IC_kwDO{comment_id}",
                "url": self.url(f"/repos/{repository}/issues/comments/{comment_id}"),
                "html_url": f"https://github.com/{repository}/issues/{number}"
                f"#issuecomment-{comment_id}",
                "issue_url": self.url(f"/repos/{repository}/issues/{number}"),
                "body": body["body"],
                "user": {"login": "loom-bot"},
            },
        )

    def _not_found(self) -> Reply:
        return json_reply(
            404, {"message": "Not Found", "documentation_url": GITHUB_DOCS, "status": "404"}
        )

    def _invalid(self, error: dict[str, str]) -> Reply:
        return json_reply(
            422,
            {
                "message": "Validation Failed",
                "errors": [error],
                "documentation_url": GITHUB_DOCS,
                "status": "422",
            },
        )


@dataclass
class FakeNotion(FakeApi):
    """``POST /v1/pages``; base URL ``url("/v1")``. Requires ``Notion-Version``."""

    databases: frozenset[str] = frozenset({"1429989fe8ac4effbc8f57f56486db54"})
    pages: frozenset[str] = frozenset({"59833787d2f84c8a9d4e2d1a3c6b0f11"})

    def answer(self, seen: Seen) -> Reply:
        if seen.method != "POST" or seen.path != "/v1/pages":
            return self._error(400, "invalid_request_url", "Invalid request URL.")
        if not self.authorised(seen):
            return self._error(401, "unauthorized", "API token is invalid.")
        if seen.headers.get("notion-version") != "2022-06-28":
            return self._error(400, "missing_version", "Notion-Version header failed validation.")
        body = json.loads(seen.body)
        parent = body.get("parent", {})
        kind, parent_id = next(iter(parent.items()), ("", ""))
        known = self.databases if kind == "database_id" else self.pages
        if parent_id.replace("-", "") not in known:
            label = "database" if kind == "database_id" else "page"
            return self._error(
                404,
                "object_not_found",
                f"Could not find {label} with ID: {parent_id}. Make sure the relevant pages "
                "and databases are shared with your integration.",
            )
        title = body.get("properties", {}).get("title", {}).get("title")
        if not title:
            return self._error(400, "validation_error", "body.properties.title should be defined")
        page_id = str(uuid.uuid4())
        return json_reply(
            200,
            {
                "object": "page",
                "id": page_id,
                "created_time": "2024-05-01T12:00:00.000Z",
                "last_edited_time": "2024-05-01T12:00:00.000Z",
                "parent": {"type": kind, kind: parent_id},
                "archived": False,
                "properties": body["properties"],
                "url": f"https://www.notion.so/Page-{page_id.replace('-', '')}",
                "public_url": None,
            },
        )

    def _error(self, status: int, code: str, message: str) -> Reply:
        return json_reply(
            status,
            {
                "object": "error",
                "status": status,
                "code": code,
                "message": message,
                "request_id": str(uuid.uuid4()),
            },
        )
