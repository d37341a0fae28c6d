"""The intake queue: retries into dead letters and replay exactly once; concurrency policies
under simultaneous starts; a lease past its time-to-live is taken over."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tests.utils.test_nodes as test_nodes
from loom.db import Database
from loom.errors import Conflict, LoomError
from loom.runtime.local.intake import QueueConsumer
from loom.secrets.vault import vault_for
from loom.triggers import dead_letters
from loom.triggers.deploy import deploy_and_issue
from loom.triggers.events import TOPIC
from loom.triggers.intake import Intake
from loom.triggers.queue import Done, Failed, Message, PostgresQueue
from loom.triggers.receive import Receipt, Receiver
from loom.triggers.sources import HttpDelivery
from loom.workflows.service import create_workflow
from tests.utils.api import test_settings
from tests.utils.pg import PgCluster
from tests.utils.triggers import (
    RecordingDispatcher,
    body_of,
    count,
    flow,
    isolated_database,
    new_workspace,
    running_engine,
    runs_of,
    signed,
    wait_until,
    webhook,
)


@pytest.fixture
def db(cluster: PgCluster) -> Iterator[Database]:
    with isolated_database(cluster, "intake") as database:
        yield database


def _dead_letters(db: Database, workspace: uuid.UUID) -> list[dict[str, Any]]:
    return dead_letters.list_dead_letters(db, workspace)


def test_a_poison_event_is_dead_lettered_after_n_attempts_and_replayed_once(
    db: Database,
) -> None:
    workspace = new_workspace(db)
    queue = PostgresQueue(db, max_attempts=3, retry_seconds=0.01)
    broken = True
    handled: list[dict[str, Any]] = []

    def handler(message: Message) -> Done:
        if broken:
            raise LoomError("the downstream system is down", solution="fix it")
        handled.append(message.payload)
        return Done()

    consumer = QueueConsumer(queue, {"test.poison": handler})
    sent = queue.send(workspace, "test.poison", {"order": 7}, dedupe_key="order-7")
    assert sent is not None
    outcomes: list[Any] = []

    def dead_lettered() -> bool:
        outcomes.extend(consumer.drain_once())
        return bool(_dead_letters(db, workspace))

    wait_until(dead_lettered)
    failures = [o for o in outcomes if isinstance(o, Failed)]
    assert len(failures) == 3 and failures[-1].dead_letter_id is not None
    [letter] = _dead_letters(db, workspace)
    assert letter["attempts"] == 3 and letter["payload"] == {"order": 7}
    assert "the downstream system is down" in letter["error"]
    assert count(db, workspace, "queue") == 0

    broken = False  # the fix
    dead_letters.replay(db, queue, workspace, letter["id"])
    with pytest.raises(Conflict, match="replayed"):
        dead_letters.replay(db, queue, workspace, letter["id"])
    for _ in range(3):
        consumer.drain_once()
    assert handled == [{"order": 7}]
    assert dead_letters.list_dead_letters(db, workspace, replayed=False) == []


def test_a_trigger_event_that_cannot_start_is_kept_and_replays_into_one_run(
    db: Database, tmp_path: Path
) -> None:
    workspace = new_workspace(db)
    settings = test_settings(tmp_path)
    workflow_id = create_workflow(db, workspace, flow(webhook())).workflow_id
    bound = deploy_and_issue(db, vault_for(settings), workspace, workflow_id)
    queue = PostgresQueue(db, max_attempts=3, retry_seconds=0.01)
    dispatcher = RecordingDispatcher()
    small = Intake(db, dispatcher, max_input_bytes=1024)  # too small for this event
    receiver = Receiver(db, vault_for(settings), queue, small)
    body = body_of({"text": "x" * 2000})
    receipt = _receive(receiver, bound.triggers[0]["id"], bound.issued["t"], body)
    assert receipt.status == "dead_lettered"  # an input too large is not worth retrying
    [letter] = _dead_letters(db, workspace)
    assert "limit" in letter["error"] and letter["topic"] == TOPIC

    fixed = Intake(db, dispatcher, max_input_bytes=1024 * 1024)
    consumer = QueueConsumer(queue, {TOPIC: fixed.handle})
    dead_letters.replay(db, queue, workspace, letter["id"])
    for _ in range(3):
        consumer.drain_once()
    [run] = runs_of(db, workspace, workflow_id)
    assert run["input"]["body"] == {"text": "x" * 2000}
    assert dispatcher.submitted == [run["id"]]


def _receive(receiver: Receiver, trigger_id: uuid.UUID, secret: str, body: bytes) -> Receipt:
    receipt = receiver.receive_http(trigger_id, _delivery(secret, body))
    assert isinstance(receipt, Receipt)
    return receipt


def _delivery(secret: str, body: bytes) -> HttpDelivery:
    headers = {k.lower(): v for k, v in signed(secret, body).items()}
    return HttpDelivery(body=body, headers=headers, received_at=datetime.now(UTC))


@pytest.mark.parametrize("policy", ["allow", "skip", "queue"])
def test_concurrency_policies_hold_under_20_simultaneous_starts(
    db: Database, tmp_path: Path, policy: str
) -> None:
    workspace = new_workspace(db)
    settings = test_settings(tmp_path)
    tag = f"policy-{uuid.uuid4().hex[:8]}"
    work = {
        "id": "out",
        "type": "ACTION",
        "subtype": "TEST",
        "parameters": {"tag": tag, "sleep": 0.1},
    }
    workflow_id = create_workflow(db, workspace, flow(webhook(), then=work)).workflow_id
    bound = deploy_and_issue(
        db,
        vault_for(settings),
        workspace,
        workflow_id,
        concurrency_policy=policy,  # type: ignore[arg-type]
    )
    trigger_id, secret = bound.triggers[0]["id"], bound.issued["t"]
    queue = PostgresQueue(db)
    with running_engine(db, settings) as engine:
        intake = Intake(db, engine)
        receiver = Receiver(db, vault_for(settings), queue, intake)
        consumer = QueueConsumer(queue, {TOPIC: intake.handle}, poll_seconds=0.02)
        consumer.start()
        try:
            receipts = _simultaneously(receiver, trigger_id, secret, 20)
            expected = 1 if policy == "skip" else 20

            def all_done() -> bool:
                runs = runs_of(db, workspace, workflow_id)
                return len(runs) == expected and all(r["status"] == "SUCCESS" for r in runs)

            wait_until(all_done, timeout=60, what=f"{expected} finished runs")
        finally:
            consumer.stop()
    statuses = sorted(r.status for r in receipts)
    runs = runs_of(db, workspace, workflow_id)
    peak = test_nodes.CONCURRENCY[tag][1]
    if policy == "allow":
        assert statuses == ["started"] * 20 and peak > 1
    elif policy == "skip":
        assert statuses == ["skipped"] * 19 + ["started"] and peak == 1
    else:
        assert statuses == ["queued"] * 19 + ["started"] and peak == 1
        ordered = sorted(runs, key=lambda r: r["started_at"])
        for before, after in itertools.pairwise(ordered):
            assert after["started_at"] >= before["finished_at"], "runs overlapped"
    assert count(db, workspace, "workflow_leases") == 0  # every lease was released
    assert count(db, workspace, "queue") == 0


def _simultaneously(
    receiver: Receiver, trigger_id: uuid.UUID, secret: str, n: int
) -> list[Receipt]:
    barrier = threading.Barrier(n)
    receipts: list[Receipt] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        delivery = _delivery(secret, body_of({"i": i}))
        barrier.wait()
        receipt = receiver.receive_http(trigger_id, delivery)
        assert isinstance(receipt, Receipt)
        with lock:
            receipts.append(receipt)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(receipts) == n
    return receipts


def test_a_lease_past_its_time_to_live_is_taken_over(db: Database, tmp_path: Path) -> None:
    workspace = new_workspace(db)
    settings = test_settings(tmp_path)
    workflow_id = create_workflow(db, workspace, flow(webhook())).workflow_id
    bound = deploy_and_issue(
        db,
        vault_for(settings),
        workspace,
        workflow_id,
        concurrency_policy="skip",
        lease_ttl_seconds=10,
    )
    trigger_id, secret = bound.triggers[0]["id"], bound.issued["t"]
    # Nothing drives the runs: the first one holds the lease as if its engine were lost.
    receiver = Receiver(
        db, vault_for(settings), PostgresQueue(db), Intake(db, RecordingDispatcher())
    )
    first = _receive(receiver, trigger_id, secret, body_of({"n": 1}))
    second = _receive(receiver, trigger_id, secret, body_of({"n": 2}))
    assert (first.status, second.status) == ("started", "skipped")
    with db.tenant(workspace) as conn:
        conn.execute("UPDATE workflow_leases SET expires_at = now() - interval '1 second'")
    third = _receive(receiver, trigger_id, secret, body_of({"n": 3}))
    assert third.status == "started"
    with db.tenant(workspace) as conn:
        lease = conn.execute("SELECT run_id FROM workflow_leases").fetchone()
    assert lease is not None and lease["run_id"] == third.run_id
