"""Starting runs from trigger events, under the workflow's concurrency policy.

- ``allow``: every event starts a run.
- ``skip``: an event that arrives while a run of the workflow holds its lease starts nothing.
- ``queue``: such an event waits in the queue until the lease is released, then starts.

The lease is a row per workflow, taken in the transaction that creates the run and released
by a database trigger when the run finishes - whichever engine drives it - or taken over
once its time-to-live has passed (a run presumed lost). The run's idempotency key comes
from the event, so an event handled twice starts one run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from loom.db import triggers as repo
from loom.db import workflows as workflows_repo
from loom.db.database import Conn, Database
from loom.engine.dispatch import RunDispatcher
from loom.engine.service import MAX_INPUT_BYTES, check_input, create_run
from loom.triggers.errors import TriggerNotFound
from loom.triggers.events import TriggerEvent
from loom.triggers.queue import Done, Message, Wait

log = logging.getLogger(__name__)

# A waiting event looks again at least this often, whatever the lease's time-to-live, so a
# release it did not hear about costs it this much at most.
RECHECK = timedelta(seconds=30)


@dataclass(frozen=True)
class Started:
    run_id: UUID
    created: bool


@dataclass(frozen=True)
class Skipped:
    """Policy ``skip``, and a run of the workflow was in progress."""


def start_in(
    conn: Conn,
    workspace_id: UUID,
    event: TriggerEvent,
    *,
    max_input_bytes: int,
    workflow: dict[str, Any] | None = None,
) -> Started | Skipped | Wait:
    """Start the event's run in the caller's transaction, under the workflow's policy. A
    run already started for this event (same key) is returned, and no lease is kept for it.
    No savepoint: a failure aborts the caller's transaction, which is meant to roll back.
    ``workflow``: its row, if the caller read it already in this transaction."""
    check_input(event.input, max_input_bytes)
    workflow = workflow or workflows_repo.get_workflow(conn, event.workflow_id)
    if workflow is None:
        raise TriggerNotFound(
            f"Workflow {event.workflow_id} was deleted after this event arrived.",
            solution="Nothing to run; the event is kept in the dead letters.",
        )
    policy = workflow["concurrency_policy"]
    run_id = uuid4()
    if policy != "allow":
        until = repo.take_lease(
            conn,
            workspace_id=workspace_id,
            workflow_id=event.workflow_id,
            run_id=run_id,
            ttl_seconds=workflow["lease_ttl_seconds"],
        )
        if until is not None and policy == "skip":
            return Skipped()
        if until is not None:
            recheck = datetime.now(UTC) + RECHECK
            return Wait(until=min(until, recheck), workflow_id=event.workflow_id)
    started = create_run(
        conn,
        workspace_id,
        event.workflow_id,
        event.input,
        version=workflow["live_version"],
        idempotency_key=event.run_key,
        trigger=event.trigger_info(),
        run_id=run_id,
    )
    if not started.created and policy != "allow":
        repo.release_lease(conn, run_id)  # taken for a run that was never inserted
    return Started(started.run_id, started.created)


class Intake:
    """Starts trigger events' runs and hands new runs to the engine; ``handle`` is the
    queue handler for ``trigger.event`` messages."""

    def __init__(
        self, db: Database, dispatcher: RunDispatcher, *, max_input_bytes: int = MAX_INPUT_BYTES
    ) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.max_input_bytes = max_input_bytes

    def start_in(
        self,
        conn: Conn,
        workspace_id: UUID,
        event: TriggerEvent,
        workflow: dict[str, Any] | None = None,
    ) -> Started | Skipped | Wait:
        return start_in(
            conn, workspace_id, event, max_input_bytes=self.max_input_bytes, workflow=workflow
        )

    def hand_over(
        self, workspace_id: UUID, event: TriggerEvent, outcome: Started | Skipped
    ) -> None:
        """After the transaction that started it commits: drive a new run."""
        if isinstance(outcome, Skipped):
            log.info("%s trigger %s: a run is in progress, skipped", event.subtype, event.node_id)
        elif outcome.created:
            self.dispatcher.submit(workspace_id, outcome.run_id)

    def handle(self, message: Message) -> Done | Wait:
        event = TriggerEvent.from_payload(message.payload)
        with self.db.tenant(message.workspace_id) as conn:
            outcome = self.start_in(conn, message.workspace_id, event)
        if isinstance(outcome, Wait):
            return outcome
        self.hand_over(message.workspace_id, event, outcome)
        return Done(outcome)
