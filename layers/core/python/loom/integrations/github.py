"""GitHub REST API: create an issue, comment on an issue or pull request."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from loom.config import get_settings
from loom.errors import InvalidInput
from loom.integrations._http import (
    Answer,
    Service,
    call_json,
    excerpt,
    failure,
    join,
    unexpected,
)
from loom.integrations.errors import IntegrationError

GITHUB = Service(
    name="GitHub",
    credential_type="github_token",
    credential_help="a token allowed to write issues on the repository (fine-grained: Issues "
    "read and write; classic: the repo scope)",
)
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")


async def create_issue(
    *,
    token: str,
    owner: str,
    repo: str,
    title: str,
    body: str | None = None,
    labels: Sequence[str] = (),
    assignees: Sequence[str] = (),
    base_url: str | None = None,
    allowlist: Sequence[str] = (),
) -> dict[str, Any]:
    """Open an issue; return its ``id``, ``number``, ``html_url``, API ``url`` and ``state``."""
    payload: dict[str, Any] = {"title": title}
    if body is not None:
        payload["body"] = body
    if labels:
        payload["labels"] = list(labels)
    if assignees:
        payload["assignees"] = list(assignees)
    data = await _post(token, base_url, allowlist, payload, (owner, repo, "issues"), "number")
    return {
        "id": data["id"],
        "number": data["number"],
        "html_url": data["html_url"],
        "url": data.get("url"),
        "state": data.get("state"),
    }


async def add_comment(
    *,
    token: str,
    owner: str,
    repo: str,
    issue_number: int,
    body: str,
    base_url: str | None = None,
    allowlist: Sequence[str] = (),
) -> dict[str, Any]:
    """Comment on issue (or pull request) ``issue_number``; return the comment's ``id``,
    ``html_url`` and API ``url``."""
    path = (owner, repo, "issues", str(issue_number), "comments")
    data = await _post(token, base_url, allowlist, {"body": body}, path)
    return {"id": data["id"], "html_url": data["html_url"], "url": data.get("url")}


async def _post(
    token: str,
    base_url: str | None,
    allowlist: Sequence[str],
    payload: dict[str, Any],
    path: tuple[str, ...],
    *expected: str,
) -> dict[str, Any]:
    """POST under /repos/OWNER/REPO; the answer, which has id, html_url and ``expected``."""
    owner, repo = path[0], path[1]
    if not OWNER.fullmatch(owner) or not REPO.fullmatch(repo) or repo in (".", ".."):
        raise InvalidInput(
            f"{owner[:64]!r}/{repo[:100]!r} is not a GitHub repository name.",
            solution="Give owner (a user or organisation) and repo as they appear in the "
            "repository's URL: github.com/OWNER/REPO.",
        )
    url = join(base_url or get_settings().github_api_url, "repos", *path)
    answer = await call_json(
        "POST", url, token=token, body=payload, headers=HEADERS, allowlist=allowlist
    )
    data = answer.data
    if answer.status >= 300:
        raise _refusal(answer, token, f"{owner}/{repo}")
    if not isinstance(data, dict) or not {"id", "html_url", *expected} <= data.keys():
        raise unexpected(GITHUB, answer, "the ids of what it created")
    return data


def _refusal(answer: Answer, token: str, repository: str) -> IntegrationError:
    data = answer.data if isinstance(answer.data, dict) else {}
    reason = excerpt(_reason(data), token) or "no reason given"
    status = answer.status
    if status == 403 and (answer.rate_limit_remaining == "0" or answer.retry_after is not None):
        status = 429  # GitHub's primary and secondary rate limits answer 403
    return failure(
        GITHUB,
        status,
        f"GitHub answered {answer.status} for {repository}: {reason}",
        retry_after=answer.retry_after,
        not_found=f"Check that {repository} (and the issue number) exist. GitHub also "
        "answers 404 when the token cannot see a private repository: give it access.",
    )


def _reason(data: dict[str, Any]) -> str:
    """``message``, then each validation error (``field code`` or its own message)."""
    parts = [str(data.get("message") or "")]
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            parts.append(
                str(error.get("message") or f"{error.get('field', '?')} {error.get('code', '')}")
            )
        else:
            parts.append(str(error))
    return "; ".join(part for part in parts if part)
