"""Health reports the database truthfully: 200 when reachable, 503 when not or stopping."""

from __future__ import annotations

from fastapi.testclient import TestClient

from loom.api.app import create_app
from loom.db import Database, DatabaseUrls
from tests.utils.procs import free_port


def test_health_ok_with_the_database(database: Database) -> None:
    with TestClient(create_app(lambda: database)) as client:
        response = client.get("/v1/public/health")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_health_503_when_the_database_is_unreachable() -> None:
    dead = f"host=127.0.0.1 port={free_port()} dbname=loom user=loom_app"
    unreachable = Database(
        DatabaseUrls(owner=dead, app=dead, embedded=False), min_size=0, timeout=0.5
    ).open()
    with TestClient(create_app(lambda: unreachable)) as client:
        response = client.get("/v1/public/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "degraded",
        "database": "unavailable",
        "version": response.json()["version"],
    }


def test_health_503_when_either_pool_cannot_reach_the_database(database: Database) -> None:
    """The hot routes await one pool, the others use another: health answers for both."""
    app = create_app(lambda: database)
    with TestClient(app) as client:
        assert client.get("/v1/public/health").status_code == 200
        client.portal.call(app.state.adb.close)  # type: ignore[union-attr]
        response = client.get("/v1/public/health")
    assert response.status_code == 503
    assert response.json()["database"] == "unavailable"
