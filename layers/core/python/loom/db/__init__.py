"""Data layer: connections, migrations and tenant-scoped transactions.

Everything that talks SQL lives under ``loom.db``. Callers get a ``Database`` and open
units of work with ``db.tenant(workspace_id)``; with no workspace set, tenant tables show
no rows (row-level security, forced).
"""

from loom.db.database import Database, connect
from loom.db.migrate import apply_migrations
from loom.db.urls import DatabaseUrls, resolve_urls

__all__ = ["Database", "DatabaseUrls", "apply_migrations", "connect", "resolve_urls"]
