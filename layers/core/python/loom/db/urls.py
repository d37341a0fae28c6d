"""Which Postgres to use: an external one from ``DATABASE_URL`` or the embedded one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from loom.config import Settings
from loom.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

APP_ROLE = "loom_app"
OWNER_ROLE = "loom_owner"
DATABASE_NAME = "loom"


@dataclass(frozen=True)
class DatabaseUrls:
    """Owner connection (migrations) and application connection (everything else)."""

    owner: str
    app: str
    embedded: bool

    def describe(self) -> str:
        return describe_target(self.owner)


def describe_target(conninfo: str) -> str:
    """``host:port/dbname`` of a connection string, without user or password."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparseable DATABASE_URL>"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"


def failure_reason(exc: Exception) -> str:
    """The useful part of a libpq connection error: 'Connection refused', 'password
    authentication failed for user "x"', 'failed to resolve host ...'."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0].removeprefix("connection failed: ")
    head, sep, tail = first.rpartition(" failed: ")
    return tail if sep and head.startswith("connection to server") else first


def _with_user(conninfo: str, user: str, password: str | None) -> str:
    parts: dict[str, Any] = dict(conninfo_to_dict(conninfo))
    parts["user"] = user
    parts.pop("password", None)
    if password:
        parts["password"] = password
    return make_conninfo(**parts)


def resolve_urls(settings: Settings) -> DatabaseUrls:
    """External Postgres when ``DATABASE_URL`` is set, else start (or join) the embedded one."""
    password = settings.app_db_password.get_secret_value() if settings.app_db_password else None
    if settings.database_url:
        try:
            conninfo_to_dict(settings.database_url)
        except psycopg.ProgrammingError as exc:
            raise DatabaseUnavailable(
                f"DATABASE_URL is not a valid Postgres URL: {exc}",
                solution="Use the form postgresql://user:password@host:5432/dbname.",
            ) from None
        app = settings.app_database_url or _with_user(settings.database_url, APP_ROLE, password)
        return DatabaseUrls(owner=settings.database_url, app=app, embedded=False)
    from loom.db.embedded import start_embedded

    socket_dir = start_embedded(settings.pg_data_dir)
    return embedded_urls(socket_dir)


def embedded_urls(socket_dir: Path) -> DatabaseUrls:
    owner = make_conninfo(host=str(socket_dir), dbname=DATABASE_NAME, user=OWNER_ROLE)
    app = make_conninfo(host=str(socket_dir), dbname=DATABASE_NAME, user=APP_ROLE)
    return DatabaseUrls(owner=owner, app=app, embedded=True)


def as_url(conninfo: str) -> str:
    """A ``postgresql://`` URL for people and tools such as psql."""
    from urllib.parse import quote

    parts = conninfo_to_dict(conninfo)
    user = quote(str(parts.get("user", "")))
    dbname = quote(str(parts.get("dbname", "")))
    host = str(parts.get("host", ""))
    if host.startswith("/"):
        return f"postgresql://{user}@/{dbname}?host={quote(host, safe='/')}"
    port = parts.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{dbname}"
