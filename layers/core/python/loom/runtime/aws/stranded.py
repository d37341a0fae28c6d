"""The minute job that starts stranded runs on AWS.

A run is committed first and its Step Functions execution started after: a start that
failed (throttled, timed out) or a function that died in between leaves the run NEW with
no execution to drive it, and a client that retries with its Idempotency-Key gets that
same run back. Every minute this job starts each top-level run still NEW a minute after
its creation. The execution is named by the run id, so a run whose execution exists (and
has not advanced it yet) is not started twice: its start is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from loom.db import runs
from loom.runtime.aws.dispatcher import StepFunctionsDispatcher
from loom.runtime.aws.platform import AwsPlatform

log = logging.getLogger(__name__)

# Far longer than a start takes; a run the API is still handing over is left to it.
STRANDED_AFTER = timedelta(minutes=1)
BATCH = 200  # per invocation; the next minute takes the rest


def start_stranded(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, int]:
    dispatcher = StepFunctionsDispatcher(platform.engine, platform.settings)
    with platform.db.system() as conn:
        stranded = runs.locate_stranded_runs(conn, platform.engine.clock() - STRANDED_AFTER, BATCH)
    started = failed = 0
    for workspace_id, run_id in stranded:
        try:
            dispatcher.submit(workspace_id, run_id)
        except Exception:
            # One run's failure must not strand the others; it is tried again next minute.
            log.exception("run %s could not be started; the next minute tries again", run_id)
            failed += 1
        else:
            started += 1
    if stranded:
        log.warning("started %d stranded runs (%d failed)", started, failed)
    return {"started": started, "failed": failed}
