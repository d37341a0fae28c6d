"""Every router of the API, in the order the app includes them: the whole API of ``loom
up`` and the tests. A Lambda function imports only its own (``functions/api``)."""

from __future__ import annotations

from fastapi import APIRouter

from loom.api.routes import (
    agent_chat,
    agent_exams,
    agents,
    api_keys,
    auth,
    builder,
    credentials,
    hil,
    mcp,
    nodes,
    public,
    runs,
    triggers,
    workflows,
    workspaces,
)

ALL_ROUTERS: tuple[APIRouter, ...] = (
    public.router,
    workflows.router,
    runs.router,
    nodes.router,
    auth.router,
    workspaces.router,
    api_keys.router,
    credentials.router,
    hil.router,
    hil.links,
    triggers.router,
    triggers.hooks,
    mcp.router,
    agents.router,
    agents.episode_router,
    agent_chat.router,
    agent_chat.threads,
    agent_exams.router,
    builder.router,
    builder.explain_router,
)
