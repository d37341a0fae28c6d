"""``/v1/nodes``: the node spec catalogue, for UIs and the workflow builder."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter

from loom.api.deps import allow
from loom.auth.principal import Principal, Role
from loom.nodes.registry import catalogue

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])


# Sync: the first call imports every node module, which must not hold up the event loop.
@router.get("")
def handle_list_nodes(
    principal: Annotated[Principal, allow(Role.VIEWER, "workflows:read")],
) -> dict[str, Any]:
    return catalogue()
