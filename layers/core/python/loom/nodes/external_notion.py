"""EXTERNAL_ACTION.NOTION: create a page in a database or under a page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from loom.integrations.notion import create_page
from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.external_common import (
    BASE_URL_HELP,
    BaseUrl,
    allowlist_of,
    checked_base_url,
    credential_of,
)
from loom.nodes.registry import register
from loom.secrets.types import NotionToken
from loom.workflows.definition import NodeType


class NotionParameters(ParametersModel):
    operation: Literal["create_page"] = Field(
        default="create_page", description="create_page: Notion's POST /v1/pages."
    )
    credential_id: str = Field(
        min_length=1,
        description="A notion_token credential of this workspace (an internal integration's "
        "secret; share the parent with the integration).",
    )
    parent_database_id: str | None = Field(
        default=None, description="Create the page as a row of this database (its id)."
    )
    parent_page_id: str | None = Field(
        default=None, description="Create the page under this page (its id)."
    )
    title: str = Field(min_length=1, max_length=2000, description="The page's title.")
    content: str | None = Field(
        default=None,
        max_length=200_000,
        description="Plain text; each blank-line-separated part becomes a paragraph.",
    )
    properties: dict[str, Any] = Field(
        default_factory=dict,
        description="Further database properties, as the Notion API takes them, e.g. "
        '{"Status": {"select": {"name": "Open"}}}.',
    )
    base_url: BaseUrl | None = Field(
        default=None, description=BASE_URL_HELP.format(setting="LOOM_NOTION_API_URL")
    )


async def execute(
    ctx: NodeContext, params: NotionParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    credential = await credential_of(ctx, params.credential_id, NotionToken)
    page = await create_page(
        token=credential.token.get_secret_value(),
        title=params.title,
        parent_database_id=params.parent_database_id,
        parent_page_id=params.parent_page_id,
        content=params.content,
        properties=params.properties,
        base_url=checked_base_url(ctx, params.base_url),
        allowlist=allowlist_of(ctx),
    )
    return NodeResult(output=page)


SPEC = register(
    NodeSpec(
        type=NodeType.EXTERNAL_ACTION,
        subtype="NOTION",
        description="Creates a Notion page (in a database or under a page) with a title, "
        "properties and plain-text paragraphs, and outputs its id and URL.",
        parameters=NotionParameters,
        execute=execute,
        side_effects=True,
    )
)
