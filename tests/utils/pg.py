"""The test database: one embedded Postgres per test session, in a temporary directory."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from loom.db import Database
from loom.db.embedded import start_embedded
from loom.db.urls import OWNER_ROLE, DatabaseUrls, embedded_urls


@dataclass(frozen=True)
class PgCluster:
    socket_dir: Path
    urls: DatabaseUrls

    @property
    def superuser(self) -> str:
        return make_conninfo(host=str(self.socket_dir), dbname="postgres", user="postgres")

    def create_database(self, name: str) -> str:
        """A fresh, empty database owned by the owner role, with pgvector: its owner URL."""
        with psycopg.connect(self.superuser, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(OWNER_ROLE)
                )
            )
        with psycopg.connect(make_conninfo(self.superuser, dbname=name), autocommit=True) as c:
            c.execute("CREATE EXTENSION vector")
        return make_conninfo(self.urls.owner, dbname=name)

    def as_url(self, conninfo: str) -> str:
        parts = conninfo_to_dict(conninfo)
        return f"postgresql://{parts['user']}@/{parts['dbname']}?host={parts['host']}"


def start_test_cluster(pgdata: Path) -> PgCluster:
    socket_dir = start_embedded(pgdata)
    return PgCluster(socket_dir=socket_dir, urls=embedded_urls(socket_dir))


def insert_workflow(db: Database, workspace: uuid.UUID, name: str) -> uuid.UUID:
    """A bare workflow row in ``workspace``: something to see, or not, across tenants."""
    with db.tenant(workspace) as conn:
        row = conn.execute(
            "INSERT INTO workflows (workspace_id, name) VALUES (%s, %s) RETURNING id",
            (workspace, name),
        ).fetchone()
    assert row is not None
    return uuid.UUID(str(row["id"]))
