"""``/v1/public``: unauthenticated routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from loom import __version__

router = APIRouter(prefix="/v1/public", tags=["public"])


EngineState = Literal["ok", "starting", "restarting"]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "shutting_down"]
    database: Literal["ok", "unavailable"]
    version: str
    engine: EngineState | None = Field(
        default=None,
        description="`loom up`'s engine process: `starting` until it has resumed the active "
        "runs, `restarting` after it died. Runs started meanwhile wait for it. Absent where "
        "the engine is not this process's to report (Step Functions on AWS).",
    )


@router.get(
    "/health",
    response_model=HealthOut,
    response_model_exclude_none=True,
    responses={503: {"model": HealthOut}},
)
async def get_health(request: Request, response: Response) -> HealthOut:
    """The database is ok when both pools reach it: the one coroutines await (the hot
    routes) and the one the other routes use from worker threads."""
    db = getattr(request.app.state, "db", None)
    adb = getattr(request.app.state, "adb", None)
    database_ok = (
        db is not None and adb is not None and await adb.ping() and await run_in_threadpool(db.ping)
    )
    shutting_down = bool(getattr(request.app.state, "shutting_down", False))
    if shutting_down or not database_ok:
        response.status_code = 503
    status: Literal["ok", "degraded", "shutting_down"] = (
        "shutting_down" if shutting_down else "ok" if database_ok else "degraded"
    )
    engine_state: Callable[[], EngineState] | None = getattr(
        request.app.state, "engine_state", None
    )
    return HealthOut(
        status=status,
        database="ok" if database_ok else "unavailable",
        version=__version__,
        engine=engine_state() if engine_state is not None else None,
    )
