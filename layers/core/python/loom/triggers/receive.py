"""Receiving a delivery for a trigger, from HTTP or mail, up to the run it starts.

1. Find the trigger's workspace (a locator function; cached, a trigger never moves) and,
   in that workspace's transaction, the trigger: unknown, inactive or another kind of
   trigger all answer 404 and store nothing.
2. Let the trigger's source verify and parse the delivery (``sources``, ``mail``).
3. In the same transaction, record its replay keys (a key seen before: a replay, nothing
   is stored) and start its run under the workflow's policy (``intake``). So the event is
   stored exactly when the delivery is recorded: as its run, or - if the policy makes it
   wait - as a queued event.
4. If starting fails, that transaction rolls back and a second one records the delivery
   with the event queued for retries (or, if retrying cannot help, in the dead letters).
   Only then does the sender get its 2xx.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from loom.db import triggers as repo
from loom.db.database import Conn, Database
from loom.engine.service import get_run
from loom.engine.states import RunStatus
from loom.nodes.registry import get_spec
from loom.nodes.trigger_webhook import WebhookParameters
from loom.secrets.types import MODELS, CredentialType, WebhookSecret
from loom.secrets.vault import Binding, Sealed, Vault
from loom.signing import SignatureInvalid
from loom.triggers.deliveries import prune_deliveries as prune_deliveries  # re-exported
from loom.triggers.errors import TriggerNotFound
from loom.triggers.events import TOPIC, TriggerEvent
from loom.triggers.intake import Intake, Skipped, Started
from loom.triggers.mail import accept_mail
from loom.triggers.queue import EventQueue, Message, Wait, fail, failure
from loom.triggers.sources import (
    Accepted,
    Answer,
    HttpDelivery,
    accept_github,
    accept_slack,
    accept_webhook,
)
from loom.workflows.definition import NodeType

Status = Literal["started", "queued", "dead_lettered", "skipped", "duplicate"]
Accept = Callable[[str, Any, bytes], Accepted | Answer]

HTTP_SUBTYPES = frozenset({"WEBHOOK", "GITHUB", "SLACK"})
_HTTP_SOURCES: dict[str, Callable[[Any, bytes, HttpDelivery], Accepted | Answer]] = {
    "WEBHOOK": accept_webhook,
    "GITHUB": accept_github,
    "SLACK": accept_slack,
}


@dataclass(frozen=True)
class Receipt:
    status: Status
    workspace_id: UUID | None = None
    run_id: UUID | None = None
    event_id: int | None = None
    sync_timeout: float | None = None  # a WEBHOOK in sync mode: how long to wait for output


class _Replayed(Exception):
    """A replay key was seen before: the transaction rolls back, nothing is stored."""


class _StartFailed(Exception):
    """Starting the run failed: the transaction rolls back, and the event is queued apart."""

    def __init__(self, error: str, retryable: bool) -> None:
        self.error = error
        self.retryable = retryable


def _remember(conn: Conn, workspace_id: UUID, event: TriggerEvent, keys: tuple[str, ...]) -> None:
    """Record the delivery's replay keys; any seen before makes it a replay."""
    if repo.record_deliveries(conn, workspace_id, event.trigger_id, keys) < len(keys):
        raise _Replayed


class _Workspaces:
    """trigger id -> workspace id, bounded; only found triggers are remembered."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._known: OrderedDict[UUID, UUID] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, trigger_id: UUID) -> UUID | None:
        with self._lock:
            return self._known.get(trigger_id)

    def put(self, trigger_id: UUID, workspace_id: UUID) -> None:
        with self._lock:
            self._known[trigger_id] = workspace_id
            if len(self._known) > self.size:
                self._known.popitem(last=False)


_WORKSPACES = _Workspaces()


class Receiver:
    def __init__(self, db: Database, vault: Vault, queue: EventQueue, intake: Intake) -> None:
        self.db = db
        self.vault = vault
        self.queue = queue
        self.intake = intake

    def receive_http(self, trigger_id: UUID, delivery: HttpDelivery) -> Receipt | Answer:
        def accept(subtype: str, params: Any, secret: bytes) -> Accepted | Answer:
            return _HTTP_SOURCES[subtype](params, secret, delivery)

        return self._receive(trigger_id, HTTP_SUBTYPES, accept, delivery.received_at)

    def receive_mail(
        self, trigger_id: UUID, raw: bytes, envelope_sender: str, received_at: datetime
    ) -> Receipt | Answer:
        def accept(subtype: str, params: Any, secret: bytes) -> Accepted:
            return accept_mail(params, raw, envelope_sender)

        return self._receive(trigger_id, frozenset({"EMAIL"}), accept, received_at)

    def knows(self, trigger_id: UUID, subtype: str) -> bool:
        """Whether the trigger exists, is deployed and is of ``subtype``."""
        workspace_id = self._workspace(trigger_id)
        if workspace_id is None:
            return False
        with self.db.tenant(workspace_id) as conn:
            row = repo.trigger_with_secret(conn, trigger_id)
        return row is not None and row["active"] and row["subtype"] == subtype

    def _workspace(self, trigger_id: UUID) -> UUID | None:
        found = _WORKSPACES.get(trigger_id)
        if found is None:
            with self.db.system() as conn:
                found = repo.locate_trigger(conn, trigger_id)
            if found is not None:
                _WORKSPACES.put(trigger_id, found)
        return found

    def _receive(
        self,
        trigger_id: UUID,
        subtypes: frozenset[str],
        accept: Accept,
        received_at: datetime,
    ) -> Receipt | Answer:
        """What the delivery came to, or the source's own answer (nothing stored)."""
        workspace_id = self._workspace(trigger_id)
        if workspace_id is None:
            raise _not_found()
        waiting: Message | None = None
        try:
            with self.db.tenant(workspace_id) as conn:
                row = repo.trigger_with_secret(conn, trigger_id)
                if row is None or not row["active"] or row["subtype"] not in subtypes:
                    raise _not_found()
                spec = get_spec(NodeType.TRIGGER, row["subtype"])
                assert spec is not None  # bound triggers have registered subtypes
                params = spec.parameters.model_validate(row["config"])
                accepted = accept(row["subtype"], params, self._secret(workspace_id, row))
                if isinstance(accepted, Answer):
                    return accepted
                keys = accepted.replay_keys
                event = TriggerEvent(
                    trigger_id=trigger_id,
                    workflow_id=row["workflow_id"],
                    node_id=row["node_id"],
                    subtype=row["subtype"],
                    delivery_id=accepted.delivery_id,
                    input=accepted.input,
                    received_at=received_at,
                )
                _remember(conn, workspace_id, event, keys)
                outcome = self._start(conn, workspace_id, event, row["workflow"])
                if isinstance(outcome, Wait):
                    waiting = self._queue(conn, workspace_id, event)
        except _Replayed:
            return Receipt("duplicate", workspace_id)
        except _StartFailed as failed:
            return self._keep(workspace_id, event, keys, failed)
        if isinstance(outcome, Wait):
            assert waiting is not None
            self.queue.wait(waiting, outcome.until, outcome.workflow_id)
            return Receipt("queued", workspace_id, event_id=waiting.id)
        self.intake.hand_over(workspace_id, event, outcome)
        if isinstance(outcome, Skipped):
            return Receipt("skipped", workspace_id)
        timeout = (
            params.sync_timeout_seconds
            if isinstance(params, WebhookParameters) and params.response_mode == "sync"
            else None
        )
        return Receipt("started", workspace_id, outcome.run_id, sync_timeout=timeout)

    def _start(
        self, conn: Conn, workspace_id: UUID, event: TriggerEvent, workflow: dict[str, Any]
    ) -> Started | Skipped | Wait:
        try:
            return self.intake.start_in(conn, workspace_id, event, workflow)
        except Exception as exc:  # the transaction rolls back; the event is kept apart
            error, retryable = failure(exc)
            raise _StartFailed(error, retryable) from exc

    def _queue(self, conn: Conn, workspace_id: UUID, event: TriggerEvent) -> Message:
        message = self.queue.send(
            workspace_id,
            TOPIC,
            event.to_payload(),
            dedupe_key=event.run_key,
            hold=True,
            within=conn,
        )
        if message is None:  # the same event is queued already
            raise _Replayed
        return message

    def _keep(
        self,
        workspace_id: UUID,
        event: TriggerEvent,
        keys: tuple[str, ...],
        failed: _StartFailed,
    ) -> Receipt:
        """The run could not start now: keep the event in the queue, to retry or (if
        retrying cannot help) in the dead letters."""
        try:
            with self.db.tenant(workspace_id) as conn:
                _remember(conn, workspace_id, event, keys)
                message = self._queue(conn, workspace_id, event)
        except _Replayed:
            return Receipt("duplicate", workspace_id)
        settled = fail(self.queue, message, failed.error, retryable=failed.retryable)
        status: Status = "dead_lettered" if settled.dead_letter_id else "queued"
        return Receipt(status, workspace_id, event_id=message.id)

    def _secret(self, workspace_id: UUID, row: dict[str, Any]) -> bytes:
        """The trigger's shared secret, decrypted for this delivery only; EMAIL has none."""
        if row["subtype"] not in HTTP_SUBTYPES:
            return b""
        if row["secret_credential_id"] is None:
            raise SignatureInvalid(
                "This trigger has no secret yet, so no signature can match.",
                solution="Issue it: POST /v1/workflows/{id}/triggers/{node_id}/secret.",
            )
        if row["secret_type"] != CredentialType.WEBHOOK_SECRET.value:
            raise SignatureInvalid(
                "This trigger's secret credential is not a webhook_secret.",
                solution="Point the trigger at a webhook_secret credential and redeploy.",
            )
        sealed = Sealed(
            ciphertext=bytes(row["ciphertext"]),
            nonce=bytes(row["nonce"]),
            wrapped_key=bytes(row["wrapped_key"]),
            key_id=row["key_id"],
        )
        binding = Binding(workspace_id, row["secret_credential_id"], row["secret_type"])
        model = MODELS[CredentialType.WEBHOOK_SECRET]
        data = model.model_validate_json(self.vault.open(sealed, binding))
        assert isinstance(data, WebhookSecret)
        return data.secret.get_secret_value().encode()


def _not_found() -> TriggerNotFound:
    return TriggerNotFound(
        "No deployed trigger accepts deliveries here.",
        solution="Check the trigger URL (GET /v1/workflows/{id}/triggers) and that the "
        "workflow is deployed.",
    )


async def wait_for_run(
    db: Database, workspace_id: UUID, run_id: UUID, timeout: float
) -> dict[str, Any] | None:
    """The run once it has finished, or None if it is still going after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.01
    while True:
        run = (await asyncio.to_thread(get_run, db, workspace_id, run_id)).run
        if RunStatus(run["status"]).finished:
            return run
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.25)
