"""``/v1/nodes``: the node spec catalogue, for UIs and the workflow builder."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Response

from loom.api.deps import allow
from loom.auth.principal import Principal, Role
from loom.nodes.registry import all_specs, catalogue

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])

# The catalogue as last sent, and the specs it was built from: building every spec's JSON
# Schema takes tens of milliseconds, and a registered spec never changes.
_rendered: tuple[tuple[int, ...], bytes] = ((), b"")


# Sync: the first call imports every node module, which must not hold up the event loop.
@router.get("", response_model=dict[str, Any])
def handle_list_nodes(
    principal: Annotated[Principal, allow(Role.VIEWER, "workflows:read")],
) -> Response:
    global _rendered
    specs = tuple(id(spec) for spec in all_specs())
    if _rendered[0] != specs:
        _rendered = (specs, json.dumps(catalogue(), separators=(",", ":")).encode())
    return Response(_rendered[1], media_type="application/json")
