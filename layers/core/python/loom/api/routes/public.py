"""``/v1/public``: unauthenticated routes."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from loom import __version__

router = APIRouter(prefix="/v1/public", tags=["public"])


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "shutting_down"]
    database: Literal["ok", "unavailable"]
    version: str


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def get_health(request: Request, response: Response) -> HealthOut:
    db = getattr(request.app.state, "db", None)
    database_ok = db is not None and db.ping()
    shutting_down = bool(getattr(request.app.state, "shutting_down", False))
    if shutting_down or not database_ok:
        response.status_code = 503
    status: Literal["ok", "degraded", "shutting_down"] = (
        "shutting_down" if shutting_down else "ok" if database_ok else "degraded"
    )
    return HealthOut(
        status=status, database="ok" if database_ok else "unavailable", version=__version__
    )
