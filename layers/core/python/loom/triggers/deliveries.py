"""Replay keys of received deliveries (``loom.triggers.receive`` records them), forgotten
when their retention is over: the schedule function's chore, which needs no receiver."""

from __future__ import annotations

from datetime import datetime

from loom.db import triggers as repo
from loom.db.database import Database


def prune_deliveries(db: Database, before: datetime) -> int:
    """Forget replay keys older than ``before`` (their retention is over)."""
    with db.system() as conn:
        workspaces = repo.locate_stale_deliveries(conn, before)
    pruned = 0
    for workspace_id in workspaces:
        with db.tenant(workspace_id) as conn:
            pruned += repo.prune_deliveries(conn, before)
    return pruned
