"""Recording usage: one ``llm_usage`` row per attempt that reached a provider (successes,
failures, retries and fallbacks alike), written with the month's spend counter in one
pipelined tenant transaction when the gateway call ends."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from loom.db import Database
from loom.db.llm import UsageRow, insert_usage
from loom.llm.calls import CallContext

log = logging.getLogger(__name__)


def record_usage(db: Database, call: CallContext, rows: Sequence[UsageRow]) -> float | None:
    """Blocking (run it in a thread): the workspace's spend this month after the rows, or
    None when there was nothing to record."""
    if not rows:
        return None
    month = insert_usage(
        db,
        workspace_id=call.workspace_id,
        run_id=call.run_id,
        node_run_id=call.node_run_id,
        agent_id=call.agent_id,
        episode_id=call.episode_id,
        rows=rows,
    )
    for row in rows:
        log.debug(
            "llm call %s (%s): %s, %d in, %d out, $%.6f, %d ms",
            row.model,
            row.provider,
            row.status,
            row.tokens_in,
            row.tokens_out,
            row.cost_usd,
            row.latency_ms,
        )
    return month
