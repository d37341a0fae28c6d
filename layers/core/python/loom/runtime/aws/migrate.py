"""The migrations custom resource: on create and update, apply pending migrations as the
owner whose credentials are in Secrets Manager (Aurora's generated secret). Migrations are
recorded with checksums and taken under a lock, so a repeated deploy applies nothing.
On RDS and Aurora it then grants ``rds_iam`` to ``loom_app``, which logs in through the
proxy with IAM auth tokens."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from psycopg.conninfo import make_conninfo

from loom.config import get_settings
from loom.db.migrate import apply_migrations, grant_iam_login
from loom.errors import ConfigError
from loom.runtime.aws.clients import client

RESOURCE_ID = "loom-migrations"


def on_event(event: Mapping[str, Any]) -> dict[str, Any]:
    if event.get("RequestType") == "Delete":
        return {"PhysicalResourceId": RESOURCE_ID}
    owner = owner_url()
    applied = apply_migrations(owner)
    iam = grant_iam_login(owner)  # loom_app reaches Aurora through the proxy with IAM auth
    return {"PhysicalResourceId": RESOURCE_ID, "Data": {"Applied": len(applied), "IamLogin": iam}}


def owner_url() -> str:
    secret_arn = get_settings().database_secret_arn
    if not secret_arn:
        raise ConfigError(
            "LOOM_DATABASE_SECRET_ARN is not set: the migrations have no owner credentials.",
            solution="Deploy the data stack, which sets it on the migrations function.",
        )
    raw = client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    secret = json.loads(raw)
    return make_conninfo(
        host=secret["host"],
        port=str(secret.get("port", 5432)),
        dbname=secret.get("dbname", "loom"),
        user=secret["username"],
        password=secret["password"],
        sslmode="require",
    )
