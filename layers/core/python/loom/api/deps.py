"""Dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from loom.db import Database
from loom.errors import DatabaseUnavailable


def get_db(request: Request) -> Database:
    db: Database | None = getattr(request.app.state, "db", None)
    if db is None:
        raise DatabaseUnavailable("The database is not connected.", solution="Retry shortly.")
    return db


DatabaseDep = Annotated[Database, Depends(get_db)]
