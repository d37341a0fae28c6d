from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loom.db import Database, apply_migrations
from tests.utils.api import ApiServer, start_api_server, test_settings
from tests.utils.engine import Harness, harness
from tests.utils.pg import PgCluster, start_test_cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> PgCluster:
    """One embedded Postgres for the session, migrated once; stopped when the session ends."""
    base = Path(os.environ.get("LOOM_TEST_PGDATA", tmp_path_factory.mktemp("pg")))
    found = start_test_cluster(base / "data")
    apply_migrations(found.urls.owner)
    return found


@pytest.fixture(scope="session")
def database(cluster: PgCluster) -> Iterator[Database]:
    db = Database(cluster.urls, min_size=1, max_size=8).open()
    yield db
    db.close()


@pytest.fixture
def workspace(database: Database) -> uuid.UUID:
    """A fresh workspace per test: tests isolate from each other the way tenants do."""
    ws = uuid.uuid4()
    with database.tenant(ws) as conn:
        conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, %s)", (ws, f"test-{ws}"))
    return ws


@pytest.fixture
def engine_harness(database: Database, workspace: uuid.UUID, tmp_path: Path) -> Harness:
    import tests.utils.test_nodes  # noqa: F401 - registers ACTION.TEST

    return harness(database, workspace, tmp_path / "blobs")


@pytest.fixture(scope="session")
def api_server(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The whole API on 127.0.0.1 over the session database (see tests/utils/api.py)."""
    with start_api_server(database, test_settings(tmp_path_factory.mktemp("api"))) as server:
        yield server


@pytest.fixture
def client(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def engine_api(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """The whole API with the local engine attached, so started runs really run."""
    from loom.runtime.local.engine_thread import EngineThread
    from loom.runtime.local.platform import build_engine

    settings = test_settings(tmp_path_factory.mktemp("engine-api"))
    _, runner = build_engine(settings, database)
    engine = EngineThread(runner, deadline_sweep_seconds=0.2)
    engine.start()
    with start_api_server(database, settings, dispatcher=engine) as server:
        yield server
    engine.stop()
