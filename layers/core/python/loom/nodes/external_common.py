"""What the EXTERNAL_ACTION nodes share: the typed credential they act with, the
workspace's allowlist, and the optional base URL that replaces the configured one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from pydantic import StringConstraints

from loom.errors import InvalidInput
from loom.net import Allowlist, parse_url
from loom.nodes.base import NodeContext
from loom.secrets.types import MODELS, CredentialData

Credential = TypeVar("Credential", bound=CredentialData)
BaseUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)]
BASE_URL_HELP = (
    "The API's base URL, for an enterprise server, a proxy or a test double; the "
    "host must be in the workspace's outbound allowlist, which admins set. Default: {setting}."
)


async def credential_of(ctx: NodeContext, credential_id: str, kind: type[Credential]) -> Credential:
    """The workspace's credential ``credential_id``, which must be of type ``kind``."""
    name = next(key.value for key, model in MODELS.items() if model is kind)
    if ctx.services is None:
        raise InvalidInput(
            "This node needs a credential, but none are available where it runs.",
            solution="Run the workflow on the Loom engine, which lends nodes their "
            "workspace's credentials.",
        )
    credential = await ctx.services.credential(credential_id)
    if not isinstance(credential, kind):
        raise InvalidInput(
            f"Credential {credential_id} is not a {name} credential.",
            solution=f"Create a {name} credential (POST /v1/credentials) and use its id.",
        )
    return credential


def allowlist_of(ctx: NodeContext) -> Sequence[str]:
    return ctx.services.outbound_allowlist if ctx.services is not None else ()


def checked_base_url(ctx: NodeContext, base_url: str | None) -> str | None:
    """A base URL override must name a host an admin allowlisted: whoever edits a workflow
    may use a credential, but must not be able to send it to a server of their choosing."""
    if base_url is None:
        return None
    if not Allowlist(allowlist_of(ctx)).admits(parse_url(base_url, what="base_url")):
        raise InvalidInput(
            "base_url names a host that is not in this workspace's outbound allowlist.",
            solution="Ask an admin to allow the host (PUT /v1/workspaces/current/settings), "
            "or leave base_url unset to use the configured service.",
        )
    return base_url
