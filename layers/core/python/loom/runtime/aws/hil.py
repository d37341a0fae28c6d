"""Human waits on Step Functions: hand an answer to the waiting execution (the HIL
callback), and apply a request's timeout action when the execution's timer fires.

Exactly one answer or timeout wins, by the request row's guarded update (``loom.engine.
hil``). An answer whose task has already timed out changes nothing here: the timeout step
reads the row and reports whichever won.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from loom.db import hil as repo
from loom.engine import hil
from loom.engine.run_state import Finished
from loom.runtime.aws.clients import client, error_code
from loom.runtime.aws.platform import AwsPlatform
from loom.runtime.aws.wire import finished_from, report_json, stale

log = logging.getLogger(__name__)

# What Step Functions answers for a token whose task is over (timed out, stopped, done).
_TASK_OVER = {"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"}


def hand_answer(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    """SendTaskSuccess with the answer's report to the task waiting on the node run."""
    workspace_id, run_id = UUID(str(event["workspace_id"])), UUID(str(event["run_id"]))
    finished = finished_from(event["finished"])
    with platform.db.tenant(workspace_id) as conn:
        token = repo.task_token_for(conn, run_id, finished.node_id, finished.attempt)
    if token is None:
        log.warning("no execution waits on node %s of run %s", finished.node_id, run_id)
        return {"delivered": False}
    try:
        client("stepfunctions").send_task_success(
            taskToken=token, output=json.dumps(report_json(finished))
        )
    except Exception as exc:
        if error_code(exc) not in _TASK_OVER:
            raise
        log.info("the wait of node %s was over already (%s)", finished.node_id, error_code(exc))
        return {"delivered": False}
    return {"delivered": True}


def time_out(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    """The report for a human wait whose timer fired: its timeout action, or the answer
    that came first."""
    workspace_id, run_id = UUID(str(event["workspace_id"])), UUID(str(event["run_id"]))
    item = event["item"]
    node_id, attempt = str(item["node_id"]), int(item["attempt"])
    now = platform.engine.clock()
    with platform.db.tenant(workspace_id) as conn:
        row = repo.latest_for_node(conn, run_id, node_id)
        if row is not None and row["status"] == "pending":
            # The timer starts before the request exists, so it may fire a little early.
            row = repo.time_out(conn, row["id"], max(now, row["expires_at"])) or row
    finished: Finished | None = hil.report_for(row) if row is not None else None
    if finished is None or finished.attempt != attempt:
        finished = stale(node_id, attempt)
    return report_json(finished)
