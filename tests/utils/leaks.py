"""Looking for a secret everywhere a user, an operator or an attacker with the database
could see it."""

from __future__ import annotations

import base64

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.utils.pg import PgCluster


def spellings(secret: str) -> list[str]:
    """The secret as is, and encoded the ways a careless layer might store it."""
    return [secret, base64.b64encode(secret.encode()).decode(), secret.encode().hex()]


def superuser_url(cluster: PgCluster) -> str:
    """Row-level security is forced even for the owner; the superuser sees every row."""
    return make_conninfo(cluster.superuser, dbname=conninfo_to_dict(cluster.urls.owner)["dbname"])


def scan_database(cluster: PgCluster, needles: list[str]) -> list[str]:
    """Every table, every text-like, JSON and bytea column: where any needle appears."""
    found: list[str] = []
    with psycopg.connect(superuser_url(cluster), autocommit=True) as conn:
        columns = conn.execute(
            "SELECT c.table_name, c.column_name, c.data_type, c.udt_name "
            "FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' "
            "AND (c.data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', "
            "'bytea') OR c.udt_name IN ('_text', '_varchar', '_jsonb'))"
        ).fetchall()
        assert len(columns) > 20  # the whole schema, not an empty catalogue
        for table, column, data_type, _ in columns:
            as_text = (
                sql.SQL("encode({}, 'escape')") if data_type == "bytea" else sql.SQL("{}::text")
            ).format(sql.Identifier(column))
            for needle in needles:
                query = sql.SQL("SELECT count(*) FROM {} WHERE strpos({}, %s) > 0").format(
                    sql.Identifier(table), as_text
                )
                row = conn.execute(query, (needle,)).fetchone()
                if row and row[0]:
                    found.append(f"{table}.{column} holds {needle!r}")
    return found
