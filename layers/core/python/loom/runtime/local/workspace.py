"""The workspace the CLI works in locally: created on first use, remembered in LOOM_HOME."""

from __future__ import annotations

import uuid
from pathlib import Path

from loom.db import Database


def local_workspace(db: Database, home: Path) -> uuid.UUID:
    marker = home / "workspace"
    if marker.exists():
        workspace_id = uuid.UUID(marker.read_text().strip())
        with db.tenant(workspace_id) as conn:
            if conn.execute("SELECT 1 FROM workspaces").fetchone():
                return workspace_id
    workspace_id = uuid.uuid4()
    with db.tenant(workspace_id) as conn:
        conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'local')", (workspace_id,))
    home.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"{workspace_id}\n")
    return workspace_id
