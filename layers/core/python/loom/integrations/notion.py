"""Notion API: create a page in a database or under a page, with plain-text content."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from loom.config import get_settings
from loom.errors import InvalidInput
from loom.integrations._http import Service, call_json, excerpt, failure, join, unexpected

NOTION = Service(
    name="Notion",
    credential_type="notion_token",
    credential_help="the secret of an internal integration that the page or database is "
    "shared with (its ••• menu, Connections)",
)
VERSION = "2022-06-28"
MAX_BLOCKS = 100  # children of one request
MAX_RICH_TEXT = 100  # rich text objects of one block
MAX_TEXT = 2000  # characters of one rich text object
_ID = re.compile(r"[0-9a-f]{32}")


async def create_page(
    *,
    token: str,
    title: str,
    parent_database_id: str | None = None,
    parent_page_id: str | None = None,
    content: str | None = None,
    properties: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    allowlist: Sequence[str] = (),
) -> dict[str, Any]:
    """Create a page titled ``title`` in a database or under a page (exactly one parent).
    ``properties`` are further database properties as the Notion API takes them;
    ``content`` becomes paragraphs, one per blank-line-separated block of text. Return the
    page's ``id``, ``url`` and ``created_time``."""
    body: dict[str, Any] = {
        "parent": _parent(parent_database_id, parent_page_id),
        "properties": {**_checked(properties or {}), "title": {"title": rich_text(title)}},
    }
    if content and content.strip():
        body["children"] = paragraphs(content)
    answer = await call_json(
        "POST",
        join(base_url or get_settings().notion_api_url, "pages"),
        token=token,
        body=body,
        headers={"Notion-Version": VERSION},
        allowlist=allowlist,
    )
    data = answer.data
    if answer.status >= 300:
        error = data if isinstance(data, dict) else {}
        reason = excerpt(f"{error.get('code', '')}: {error.get('message', '')}", token)
        raise failure(
            NOTION,
            answer.status,
            f"Notion answered {answer.status} creating a page ({reason.strip(': ') or '-'}).",
            retry_after=answer.retry_after,
            not_found="Check the parent id, and share the page or database with the "
            "integration (its ••• menu, Connections): Notion answers 404 for what it hides.",
        )
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise unexpected(NOTION, answer, "the id of the new page")
    return {"id": data["id"], "url": data.get("url"), "created_time": data.get("created_time")}


def paragraphs(content: str) -> list[dict[str, Any]]:
    """Paragraph blocks, one per blank-line-separated part of ``content``."""
    parts = [part.strip("\n") for part in re.split(r"\n[ \t]*\n", content.strip())]
    blocks = [
        {"object": "block", "type": "paragraph", "paragraph": {"rich_text": rich_text(part)}}
        for part in parts
        if part.strip()
    ]
    if len(blocks) > MAX_BLOCKS:
        raise InvalidInput(
            f"The content has {len(blocks)} paragraphs; Notion takes {MAX_BLOCKS} per page "
            "creation.",
            solution="Shorten the content, or join paragraphs.",
        )
    return blocks


def rich_text(text: str) -> list[dict[str, Any]]:
    """``text`` as Notion rich text objects of at most ``MAX_TEXT`` characters each."""
    pieces = [text[start : start + MAX_TEXT] for start in range(0, len(text), MAX_TEXT)]
    if len(pieces) > MAX_RICH_TEXT:
        raise InvalidInput(
            f"One paragraph of {len(text)} characters is more than Notion takes in one block "
            f"({MAX_RICH_TEXT * MAX_TEXT}).",
            solution="Split it with blank lines.",
        )
    return [{"type": "text", "text": {"content": piece}} for piece in pieces]


def _parent(database_id: str | None, page_id: str | None) -> dict[str, str]:
    if (database_id is None) == (page_id is None):
        raise InvalidInput(
            "A Notion page needs exactly one parent: a database or a page.",
            solution="Give parent_database_id or parent_page_id, not both.",
        )
    if database_id is not None:
        return {"database_id": _id(database_id)}
    assert page_id is not None
    return {"page_id": _id(page_id)}


def _id(value: str) -> str:
    """A Notion id, with or without dashes (the 32 hex digits at the end of a page URL)."""
    compact = value.strip().replace("-", "").lower()
    if not _ID.fullmatch(compact):
        raise InvalidInput(
            f"{value[:64]!r} is not a Notion id.",
            solution="Use the 32 hexadecimal digits at the end of the page or database URL.",
        )
    return compact


def _checked(properties: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in properties.items():
        if name == "title" or (isinstance(value, dict) and "title" in value):
            raise InvalidInput(
                f"Property {name[:64]!r} sets the page title, which the title parameter sets.",
                solution="Give the title as title, and only the other properties here.",
            )
    return dict(properties)
