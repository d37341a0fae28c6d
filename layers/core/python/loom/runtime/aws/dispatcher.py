"""``RunDispatcher`` on Step Functions: a run is one execution of ``workflow_run`` (then
its continuations), named by the run id so that starting twice starts it once.

Cancel records the cancellation in the run first (the database is the truth), then stops
the execution that drives it. A person's answer goes to the HIL callback function, the
only one allowed to hand results to waiting executions.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from loom.config import Settings
from loom.db import executions
from loom.engine.advance import Engine
from loom.engine.run_state import Finished
from loom.engine.states import RunStatus
from loom.errors import ConfigError
from loom.runtime.aws.clients import client, error_code
from loom.runtime.aws.wire import report_json

log = logging.getLogger(__name__)


def start_input(workspace_id: UUID, run_id: UUID) -> dict[str, Any]:
    """A new execution's input: advance first."""
    return {
        "workspace_id": str(workspace_id),
        "run_id": str(run_id),
        "route": "advance",
        "generation": 0,
        "events": 0,
        "result": {"finished": []},
    }


def state_machine(settings: Settings) -> str:
    if not settings.state_machine_arn:
        raise ConfigError(
            "LOOM_STATE_MACHINE_ARN is not set: no state machine drives runs here.",
            solution="Deploy the engine stack, which sets it on every function that needs it.",
        )
    return settings.state_machine_arn


def execution_arn(settings: Settings, name: str) -> str:
    return state_machine(settings).replace(":stateMachine:", ":execution:", 1) + f":{name}"


def start(settings: Settings, name: str, payload: dict[str, Any]) -> None:
    """Start execution ``name``; one that exists already is the same start, done before."""
    try:
        client("stepfunctions").start_execution(
            stateMachineArn=state_machine(settings), name=name, input=json.dumps(payload)
        )
    except Exception as exc:
        if error_code(exc) != "ExecutionAlreadyExists":
            raise
        log.info("execution %s was started before", name)


class StepFunctionsDispatcher:
    CALLS_OUT = True  # submit calls Step Functions: see loom.engine.dispatch.submit_from_loop

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def submit(self, workspace_id: UUID, run_id: UUID) -> None:
        name = str(run_id)
        with self.engine.db.tenant(workspace_id) as conn:
            executions.drive_on_aws(conn, run_id, name)
        start(self.settings, name, start_input(workspace_id, run_id))

    def report(self, workspace_id: UUID, run_id: UUID, finished: Finished) -> None:
        if not self.settings.hil_callback_function:
            raise ConfigError(
                "LOOM_HIL_CALLBACK_FUNCTION is not set: answers cannot reach the run.",
                solution="Deploy the engine stack, which sets it on the API functions.",
            )
        payload = {
            "workspace_id": str(workspace_id),
            "run_id": str(run_id),
            "finished": report_json(finished),
        }
        client("lambda").invoke(
            FunctionName=self.settings.hil_callback_function,
            InvocationType="Event",
            Payload=json.dumps(payload).encode(),
        )

    def cancel(self, workspace_id: UUID, run_id: UUID, reason: str) -> RunStatus:
        state = self.engine.advance(workspace_id, run_id, cancel=reason)
        with self.engine.db.tenant(workspace_id) as conn:
            name = executions.execution_of(conn, run_id)
        if name:
            try:
                client("stepfunctions").stop_execution(
                    executionArn=execution_arn(self.settings, name), cause=reason[:32_000]
                )
            except Exception as exc:
                if error_code(exc) != "ExecutionDoesNotExist":
                    raise
        return state.status
