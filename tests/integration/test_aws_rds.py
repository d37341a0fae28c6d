"""loom_app on AWS logs in with IAM auth tokens: signed offline by botocore, handed to
each new connection by the pool, renewed before they expire; and the migrations let
loom_app use them where the server has RDS's ``rds_iam`` role (and only there)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from moto import mock_aws
from psycopg.conninfo import make_conninfo

from loom.config import Settings
from loom.db import Database
from loom.db.migrate import grant_iam_login
from loom.errors import ConfigError
from loom.runtime.aws import clients
from loom.runtime.aws.rds import RENEW_AFTER_SECONDS, IamAuthToken, database_for
from tests.utils.pg import PgCluster

PROXY = "loom-proxy.proxy-abc123.us-east-1.rds.amazonaws.com"
APP_URL = f"postgresql://loom_app@{PROXY}:5432/loom?sslmode=require"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients.client.cache_clear()
    with mock_aws():
        yield
    clients.client.cache_clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _signed(token: str) -> dict[str, list[str]]:
    parts = urlsplit("https://" + token)
    assert (parts.hostname, parts.port) == (PROXY, 5432)
    return parse_qs(parts.query)


def test_the_token_is_signed_for_the_proxy_and_loom_app_and_renewed_in_time(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    token = IamAuthToken(APP_URL, clock=clock)
    signed: list[str] = []
    rds = clients.client("rds")
    sign = rds.generate_db_auth_token

    def counted(**kwargs: object) -> str:
        signed.append(str(kwargs["DBUsername"]))
        token: str = sign(**kwargs)
        return token

    monkeypatch.setattr(rds, "generate_db_auth_token", counted)

    first = token()
    query = _signed(first)
    assert query["Action"] == ["connect"] and query["DBUser"] == ["loom_app"]
    assert query["X-Amz-Expires"] == ["900"] and "X-Amz-Signature" in query
    clock.now += RENEW_AFTER_SECONDS - 1
    assert token() == first  # still fresh: no new signature
    clock.now += 1
    token()
    assert signed == ["loom_app", "loom_app"]  # renewed 5 minutes before it expires


def test_the_pool_asks_for_a_password_for_each_new_connection(cluster: PgCluster) -> None:
    asked: list[int] = []

    def password() -> str:
        asked.append(1)
        return "ignored by the test server, which trusts its socket"

    with (
        Database(cluster.urls, min_size=2, max_size=2, password=password) as db,
        db.system() as conn,
    ):
        assert conn.execute("SELECT current_user AS u").fetchone() == {"u": "loom_app"}
    assert len(asked) == 2


def test_functions_use_tokens_only_when_configured(aws: None) -> None:
    with_tokens = database_for(
        Settings(database_url=APP_URL, app_database_url=APP_URL, db_iam_auth=True), max_size=1
    )
    kwargs = with_tokens.pool.kwargs
    assert callable(kwargs)
    assert _signed(kwargs()["password"])["DBUser"] == ["loom_app"]
    plain = database_for(Settings(database_url=APP_URL, app_database_url=APP_URL), max_size=1)
    assert not callable(plain.pool.kwargs) and "password" not in (plain.pool.kwargs or {})


def test_a_socket_url_cannot_take_iam_tokens(aws: None, cluster: PgCluster) -> None:
    with pytest.raises(ConfigError, match="no TCP host"):
        IamAuthToken(cluster.urls.app)


def test_loom_app_gets_rds_iam_only_where_the_role_exists(cluster: PgCluster) -> None:
    def member() -> bool:
        with psycopg.connect(cluster.urls.owner) as conn:
            row = conn.execute(
                "SELECT pg_has_role('loom_app', 'rds_iam', 'MEMBER')"
                " FROM pg_roles WHERE rolname = 'rds_iam'"
            ).fetchone()
        return bool(row and row[0])

    assert grant_iam_login(cluster.urls.owner) is False  # not RDS: nothing to grant
    superuser = make_conninfo(cluster.superuser, dbname="loom")
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute("CREATE ROLE rds_iam")  # as RDS has it, and its master user may grant it
        conn.execute("GRANT rds_iam TO loom_owner WITH ADMIN OPTION")
    try:
        assert not member()
        assert grant_iam_login(cluster.urls.owner) is True
        assert member()
        assert grant_iam_login(cluster.urls.owner) is True  # every deploy: no error
    finally:
        with psycopg.connect(superuser, autocommit=True) as conn:
            conn.execute("DROP ROLE rds_iam")
