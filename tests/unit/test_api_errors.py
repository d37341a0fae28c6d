"""One error shape for every failure the API can meet."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from loom.api.errors import install_error_handlers
from loom.errors import NotFound


class Body(BaseModel):
    name: str
    count: int


def _app() -> FastAPI:
    router = APIRouter()

    @router.get("/missing")
    def missing() -> None:
        raise NotFound("Workflow wf-1 not found.", solution="Check the id.")

    @router.post("/things")
    def things(body: Body) -> Body:
        return body

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("password=hunter2 in an internal message")

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    return app


def _error(response: object) -> dict[str, object]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert {"code", "message", "solution", "request_id"} <= set(body["error"])
    return dict(body["error"])


def test_domain_error_maps_to_its_status() -> None:
    response = TestClient(_app()).get("/missing")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_validation_lists_every_field() -> None:
    response = TestClient(_app()).post("/things", json={"count": "many"})
    assert response.status_code == 422
    error = _error(response)
    paths = {d["path"] for d in error["details"]}  # type: ignore[attr-defined]
    assert paths == {"body.name", "body.count"}


def test_unknown_route_and_method_use_the_shape() -> None:
    client = TestClient(_app())
    assert _error(client.get("/nope"))["code"] == "not_found"
    assert _error(client.delete("/missing"))["code"] == "method_not_allowed"


def test_unexpected_errors_are_500_without_internals() -> None:
    response = TestClient(_app(), raise_server_exceptions=False).get("/boom")
    assert response.status_code == 500
    assert "hunter2" not in response.text
    assert _error(response)["code"] == "internal"
