from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from loom.config import Settings
from loom.db.urls import as_url, describe_target, failure_reason, resolve_urls
from loom.errors import DatabaseUnavailable


def test_app_url_is_derived_from_database_url() -> None:
    settings = Settings(
        database_url="postgresql://owner:ownerpw@db.example:6543/loom",
        app_db_password="apppw",  # type: ignore[arg-type]
    )
    urls = resolve_urls(settings)
    app = conninfo_to_dict(urls.app)
    assert (app["user"], app["password"], app["host"], app["port"], app["dbname"]) == (
        "loom_app",
        "apppw",
        "db.example",
        "6543",
        "loom",
    )
    assert urls.owner == settings.database_url and not urls.embedded


def test_explicit_app_url_wins() -> None:
    settings = Settings(
        database_url="postgresql://o@h/d", app_database_url="postgresql://loom_app@proxy/d"
    )
    assert resolve_urls(settings).app == "postgresql://loom_app@proxy/d"


def test_invalid_database_url_is_a_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable, match="not a valid Postgres URL"):
        resolve_urls(Settings(database_url="postgresql://h/d?sslmode=verify-full&&bogus"))


def test_describe_target_never_shows_credentials() -> None:
    described = describe_target("postgresql://user:topsecret@db.internal:5433/app")
    assert described == "db.internal:5433/app"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            'connection failed: connection to server at "127.0.0.1", port 5999 failed: '
            "Connection refused\n\tIs the server running on that host?",
            "Connection refused",
        ),
        (
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
        ),
        ("", "OperationalError"),
    ],
)
def test_failure_reason_keeps_the_cause(message: str, reason: str) -> None:
    class OperationalError(Exception):
        pass

    assert failure_reason(OperationalError(message)) == reason


def test_as_url_for_sockets_and_tcp() -> None:
    assert as_url("host=/tmp/s dbname=loom user=loom_owner") == (
        "postgresql://loom_owner@/loom?host=/tmp/s"
    )
    assert as_url("host=db port=5433 dbname=loom user=a") == "postgresql://a@db:5433/loom"
