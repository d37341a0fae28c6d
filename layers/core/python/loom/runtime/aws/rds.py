"""The application's database on AWS: through the RDS Proxy as ``loom_app``, with an IAM
auth token for a password when ``LOOM_DB_IAM_AUTH`` is set.

A token is signed locally (no call to AWS) with the function's role, which holds
``rds-db:connect`` for ``loom_app``; it admits new connections for 15 minutes, and an
open connection outlives it. One token serves every connection made in its first 10
minutes, then the next connection signs a new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from psycopg.conninfo import conninfo_to_dict

from loom.config import Settings
from loom.db import Database, resolve_urls
from loom.errors import ConfigError
from loom.runtime.aws.clients import client

RENEW_AFTER_SECONDS = 600.0  # tokens are valid for 900 s


class IamAuthToken:
    """A ``Database`` password provider: the current token for the URL's host, port, user."""

    def __init__(self, conninfo: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        parts = conninfo_to_dict(conninfo)
        host, user = parts.get("host"), parts.get("user")
        if not host or not user or str(host).startswith("/"):
            raise ConfigError(
                "LOOM_DB_IAM_AUTH is set, but the application's database URL names no "
                "TCP host and user to sign a token for.",
                solution="Set LOOM_APP_DATABASE_URL to postgresql://loom_app@<proxy "
                "endpoint>:5432/loom?sslmode=require (the data stack does).",
            )
        self.host, self.user = str(host), str(user)
        self.port = int(parts.get("port") or 5432)
        self.clock = clock
        self._lock = threading.Lock()
        self._token = ""
        self._signed_at = 0.0

    def __call__(self) -> str:
        with self._lock:
            now = self.clock()
            if not self._token or now - self._signed_at >= RENEW_AFTER_SECONDS:
                self._token = client("rds").generate_db_auth_token(
                    DBHostname=self.host, Port=self.port, DBUsername=self.user
                )
                self._signed_at = now
            return self._token


def database_for(settings: Settings, *, max_size: int) -> Database:
    """The pool of this function (not opened), with IAM auth tokens if configured."""
    urls = resolve_urls(settings)
    return Database(
        urls,
        min_size=0,
        max_size=max_size,
        timeout=settings.connect_timeout_seconds,
        password=IamAuthToken(urls.app) if settings.db_iam_auth else None,
    )
