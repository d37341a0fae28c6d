"""Lambda entry point for /v1/agents, /v1/episodes and /v1/threads."""

from loom.api.routes import agent_chat, agent_exams, agents
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(
    agents.router,
    agents.episode_router,
    agent_chat.router,
    agent_chat.threads,
    agent_exams.router,
)
