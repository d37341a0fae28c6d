"""EXTERNAL_ACTION.GITHUB: open an issue, or comment on an issue or pull request.

The operation is a discriminated union on ``action.operation``, so each operation's own
parameters are required and others refused, and the catalogue's schema says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

from loom.integrations.github import add_comment, create_issue
from loom.nodes.base import NodeContext, NodeResult, NodeSpec, ParametersModel
from loom.nodes.external_common import (
    BASE_URL_HELP,
    BaseUrl,
    allowlist_of,
    checked_base_url,
    credential_of,
)
from loom.nodes.registry import register
from loom.secrets.types import GitHubToken
from loom.workflows.definition import NodeType


class CreateIssue(ParametersModel):
    operation: Literal["create_issue"]
    title: str = Field(min_length=1, max_length=256, description="The issue's title.")
    body: str | None = Field(
        default=None, max_length=65_536, description="The issue's text (Markdown)."
    )
    labels: list[str] = Field(
        default_factory=list, max_length=100, description="Label names; missing ones are created."
    )
    assignees: list[str] = Field(
        default_factory=list, max_length=10, description="Logins of the people to assign."
    )


class AddComment(ParametersModel):
    operation: Literal["add_comment"]
    issue_number: int = Field(ge=1, description="The issue or pull request number.")
    body: str = Field(min_length=1, max_length=65_536, description="The comment (Markdown).")


class GitHubParameters(ParametersModel):
    credential_id: str = Field(
        min_length=1,
        description="A github_token credential of this workspace (a fine-grained token with "
        "Issues read and write, or a classic token with the repo scope).",
    )
    owner: str = Field(
        min_length=1, max_length=39, description="The repository's owner (user or organisation)."
    )
    repo: str = Field(min_length=1, max_length=100, description="The repository's name.")
    action: Annotated[CreateIssue | AddComment, Field(discriminator="operation")] = Field(
        description="What to do: create_issue or add_comment, with that operation's fields."
    )
    base_url: BaseUrl | None = Field(
        default=None, description=BASE_URL_HELP.format(setting="LOOM_GITHUB_API_URL")
    )


async def execute(
    ctx: NodeContext, params: GitHubParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    credential = await credential_of(ctx, params.credential_id, GitHubToken)
    token = credential.token.get_secret_value()
    action = params.action
    if isinstance(action, CreateIssue):
        output = await create_issue(
            token=token,
            owner=params.owner,
            repo=params.repo,
            title=action.title,
            body=action.body,
            labels=action.labels,
            assignees=action.assignees,
            base_url=checked_base_url(ctx, params.base_url),
            allowlist=allowlist_of(ctx),
        )
    else:
        output = await add_comment(
            token=token,
            owner=params.owner,
            repo=params.repo,
            issue_number=action.issue_number,
            body=action.body,
            base_url=checked_base_url(ctx, params.base_url),
            allowlist=allowlist_of(ctx),
        )
    return NodeResult(output=output)


SPEC = register(
    NodeSpec(
        type=NodeType.EXTERNAL_ACTION,
        subtype="GITHUB",
        description="Creates an issue, or comments on an issue or pull request, in a GitHub "
        "repository, and outputs the new item's id, number and URLs.",
        parameters=GitHubParameters,
        execute=execute,
        side_effects=True,
    )
)
