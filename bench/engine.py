"""Engine overhead: a chain of 200 no-op transforms and a fan-out of 200, on the local
engine and a real embedded Postgres. Prints ms per node, nodes per second, and database
round trips per node (counted from libpq's protocol trace: one per Sync or simple Query
the client sends). Targets: <= 2 ms per node, >= 500 nodes/s, <= 3 round trips per node."""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.pq import Trace  # noqa: E402

from loom.blobs import LocalBlobStore  # noqa: E402
from loom.db import Database, apply_migrations  # noqa: E402
from loom.engine.advance import Engine  # noqa: E402
from loom.engine.runner import LocalRunner  # noqa: E402
from loom.engine.service import start_run  # noqa: E402
from loom.workflows.service import create_workflow  # noqa: E402
from tests.utils.pg import start_test_cluster  # noqa: E402

N = 200
REPEATS = 5


def _noop(node_id: str) -> dict[str, Any]:
    return {"id": node_id, "type": "ACTION", "subtype": "TRANSFORM", "parameters": {"value": 1}}


def chain() -> dict[str, Any]:
    ids = [f"n{i}" for i in range(N)]
    edges = [{"from": a, "to": b} for a, b in itertools.pairwise(["start", *ids])]
    nodes = [{"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}, *map(_noop, ids)]
    return {"name": f"chain of {N}", "nodes": nodes, "edges": edges}


def fan_out() -> dict[str, Any]:
    ids = [f"n{i}" for i in range(N)]
    nodes = [{"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}, *map(_noop, ids)]
    return {
        "name": f"fan-out of {N}",
        "nodes": nodes,
        "edges": [{"from": "start", "to": i} for i in ids],
    }


class RoundTrips:
    """Counts client round trips on every pooled connection via libpq's trace."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.directory = directory
        self.files: list[Any] = []

    def configure(self, conn: psycopg.Connection[Any]) -> None:
        handle = open(self.directory / f"trace-{len(self.files)}.log", "w")  # noqa: SIM115
        self.files.append(handle)
        conn.pgconn.trace(handle.fileno())
        conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)

    def count(self) -> int:
        total = 0
        for handle in self.files:
            handle.close()
            with open(handle.name) as reader:
                for line in reader:
                    parts = line.split("\t")
                    if (
                        len(parts) > 2
                        and parts[0] == "F"
                        and parts[2].strip().split(" ")[0] in ("Sync", "Query")
                    ):
                        total += 1
        return total


def _drive(db: Database, ws: uuid.UUID, flow: uuid.UUID, tmp: str) -> float:
    """Seconds to run one instance of ``flow`` to completion on a fresh engine."""
    engine = Engine(db, LocalBlobStore(Path(tmp) / "blobs"))
    runner = LocalRunner(engine, per_run_limit=N, global_limit=N)
    run_id = start_run(db, ws, flow, {}).run_id
    started = time.perf_counter()
    state = asyncio.run(runner.drive(ws, run_id))
    elapsed = time.perf_counter() - started
    assert state.status.value == "SUCCESS", state
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = start_test_cluster(Path(tmp) / "pg")
        apply_migrations(cluster.urls.owner)
        timed_db = Database(cluster.urls, min_size=2, max_size=4).open()
        ws = uuid.uuid4()
        with timed_db.tenant(ws) as conn:
            conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'bench')", (ws,))
        print(
            f"{'shape':<10}{'ms/node':>9}{'nodes/s':>10}{'trips/node':>12}   (median of {REPEATS})"
        )
        for label, definition in (("chain", chain()), ("fan-out", fan_out())):
            flow = create_workflow(timed_db, ws, definition).workflow_id
            timings = [_drive(timed_db, ws, flow, tmp) for _ in range(REPEATS + 1)][1:]
            # Round trips are counted on a separate, traced run (tracing slows the client),
            # after its pool closed so libpq has flushed every trace.
            trips = RoundTrips(Path(tmp) / label)
            traced_db = Database(cluster.urls, min_size=1, max_size=4)
            traced_db.pool._configure = trips.configure  # bench-only hook: trace connections
            with traced_db:
                _drive(traced_db, ws, flow, tmp)
            per_node_trips = trips.count() / N
            elapsed = statistics.median(timings)
            print(
                f"{label:<10}{elapsed / N * 1000:>9.2f}{N / elapsed:>10.0f}{per_node_trips:>12.2f}"
            )
        timed_db.close()
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
