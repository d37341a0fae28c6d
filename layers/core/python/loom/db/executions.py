"""SQL for runs driven by Step Functions: which execution drives a run now."""

from __future__ import annotations

from uuid import UUID

from loom.db.database import Conn


def drive_on_aws(conn: Conn, run_id: UUID, execution: str) -> None:
    """Mark the run as driven by Step Functions execution ``execution`` (its name)."""
    conn.execute(
        "UPDATE runs SET engine = 'aws', execution_ref = %s WHERE id = %s", (execution, run_id)
    )


def execution_of(conn: Conn, run_id: UUID) -> str | None:
    row = conn.execute("SELECT execution_ref FROM runs WHERE id = %s", (run_id,)).fetchone()
    return row["execution_ref"] if row else None
