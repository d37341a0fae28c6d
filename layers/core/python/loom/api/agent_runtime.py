"""The API process's ``AgentRuntime`` (chat and exams run agents in the API process, on
its event loop), built on first use from the app's database and settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from loom.agents.runtime import AgentRuntime
from loom.api.deps import DatabaseDep, SettingsDep
from loom.engine.services import ServicesCache
from loom.llm.gateway import LlmGateway
from loom.secrets.vault import vault_for


async def get_agent_runtime(
    request: Request, db: DatabaseDep, settings: SettingsDep
) -> AgentRuntime:
    runtime: AgentRuntime | None = getattr(request.app.state, "agents", None)
    if runtime is None or runtime.db is not db:
        vault = vault_for(settings)
        llm = LlmGateway(db, settings=settings, vault=vault)
        runtime = AgentRuntime(db, llm, ServicesCache(db, vault), settings.base_url)
        request.app.state.agents = runtime
    return runtime


AgentRuntimeDep = Annotated[AgentRuntime, Depends(get_agent_runtime)]
