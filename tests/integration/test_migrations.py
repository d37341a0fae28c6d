"""Migrations apply once, in order, safely from several processes at once."""

from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg
import pytest

from loom.db import apply_migrations
from loom.db.migrate import MigrationError, load_migrations
from tests.utils.pg import PgCluster


def test_applying_twice_is_a_no_op(cluster: PgCluster) -> None:
    url = cluster.create_database(f"mig_{uuid.uuid4().hex[:8]}")
    first = apply_migrations(url)
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    second = apply_migrations(url)
    with psycopg.connect(url) as conn:
        after = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert first == [m.version for m in load_migrations()]
    assert second == []
    assert before == after


def test_two_processes_migrating_at_once_agree(cluster: PgCluster) -> None:
    url = cluster.create_database(f"mig_{uuid.uuid4().hex[:8]}")
    script = (
        "import sys; from loom.db import apply_migrations; "
        "print(','.join(apply_migrations(sys.argv[1])))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode() for _, err in results]
    applied = sorted(out.decode().strip() for out, _ in results)
    expected = ",".join(m.version for m in load_migrations())
    assert applied == ["", expected], "exactly one process applies, the other finds it done"
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [m.version for m in load_migrations()]


def test_an_edited_applied_migration_is_refused(cluster: PgCluster) -> None:
    url = cluster.create_database(f"mig_{uuid.uuid4().hex[:8]}")
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = '0001'")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(url)
