"""MEMORY nodes: what an AI_AGENT node remembers. They attach to an agent by an edge from the
memory (port ``memory``) to the agent.

CONVERSATION keeps the turns of a conversation per key (a customer id, a thread) across
runs: the agent sees a running summary of older turns and the recent ones verbatim; when
the unsummarized turns grow past a token budget, the older ones are folded into the
summary by the agent's model. VECTOR keeps texts with embeddings (pgvector) in a
collection, which the agent searches, and may add to, as tools.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from loom.errors import LoomError
from loom.expressions import evaluate
from loom.nodes.agent_tools import Tool, expression_scope
from loom.nodes.base import AgentMemory, NodeContext, NodeSpec, ParametersModel, Turn
from loom.nodes.registry import register
from loom.workflows.definition import Node, NodeType

MEMORY_PORT = "memory"
SUMMARY_SOURCE_TURNS = 200
DEFAULT_EMBEDDING_MODEL = "local/all-minilm-l6-v2"

Embed = Callable[[str, list[str]], Awaitable[list[list[float]]]]
Summarize = Callable[[str | None, list[Turn]], Awaitable[str]]


class MemoryUnavailable(LoomError):
    code = "memory_unavailable"
    retryable = False


class ConversationMemory(ParametersModel):
    key: str = Field(
        min_length=1,
        max_length=500,
        description="Which conversation: runs with the same key share it.",
        examples=["support:{% $input.customer_id %}"],
    )
    recent_turns: int = Field(default=10, ge=1, le=100, description="Turns shown verbatim.")
    summarize_over_tokens: int = Field(
        default=2000,
        ge=200,
        le=100_000,
        description="When unsummarized turns exceed this (about 4 characters a token), the "
        "older ones are folded into the running summary.",
    )


class VectorMemory(ParametersModel):
    collection: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,40}$",
        description="The collection; tools search_<collection> and remember_<collection>.",
    )
    top_k: int = Field(default=4, ge=1, le=20, description="Results per search.")
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL, description="Model that embeds texts (384 dimensions)."
    )
    writable: bool = Field(default=True, description="Offer remember_<collection> too.")


@dataclass
class Conversation:
    key: str
    settings: ConversationMemory
    summary: str | None
    turns: list[Turn]

    def messages(self) -> list[dict[str, Any]]:
        shown: list[dict[str, Any]] = []
        if self.summary:
            shown.append(
                {"role": "system", "content": f"Summary of the conversation so far: {self.summary}"}
            )
        shown += [{"role": t.role, "content": t.content} for t in self.turns]
        return shown


def _store(ctx: NodeContext) -> AgentMemory:
    if ctx.memory is None:
        raise MemoryUnavailable(
            "This engine keeps no agent memory.", solution="Run on `loom up` or on AWS."
        )
    return ctx.memory


async def open_conversation(ctx: NodeContext, node: Node) -> Conversation:
    raw = evaluate(
        node.parameters,
        expression_scope(ctx),
        where=f"nodes.{node.id}.parameters",
    )
    settings = ConversationMemory.model_validate(raw)
    summary, turns = await _store(ctx).conversation(settings.key, settings.recent_turns)
    return Conversation(settings.key, settings, summary, turns)


async def record_exchange(
    ctx: NodeContext, conversation: Conversation, prompt: str, answer: str, summarize: Summarize
) -> bool:
    """Store the new turns; fold older turns into the summary when over budget. Whether a
    new summary was made."""
    store = _store(ctx)
    await store.add_turns(conversation.key, [("user", prompt), ("assistant", answer)])
    summary, pending = await store.conversation(conversation.key, SUMMARY_SOURCE_TURNS)
    keep = conversation.settings.recent_turns
    if len(pending) <= keep or _tokens(pending) <= conversation.settings.summarize_over_tokens:
        return False
    older = pending[:-keep]
    folded = await summarize(summary, older)
    await store.save_summary(conversation.key, folded, older[-1].id)
    return True


def summary_prompt(summary: str | None, turns: list[Turn]) -> list[dict[str, Any]]:
    lines = "\n".join(f"{t.role}: {t.content}" for t in turns)
    earlier = f"The summary so far: {summary}\n\n" if summary else ""
    return [
        {
            "role": "system",
            "content": "You keep a running summary of a conversation: facts, decisions, open "
            "questions, names. Reply with the updated summary only, at most 200 words.",
        },
        {"role": "user", "content": f"{earlier}New turns:\n{lines}"},
    ]


def vector_tools(ctx: NodeContext, node: Node, embed: Embed) -> list[Tool]:
    return memory_tools(ctx, VectorMemory.model_validate(node.parameters), embed)


def memory_tools(ctx: NodeContext, settings: VectorMemory, embed: Embed) -> list[Tool]:
    """search_<collection>, and remember_<collection> (a write) when writable."""
    store = _store(ctx)
    collection = settings.collection

    async def search(args: dict[str, Any]) -> Any:
        [vector] = await embed(settings.embedding_model, [str(args.get("query", ""))])
        return await store.search(collection, vector, settings.top_k)

    async def remember(args: dict[str, Any]) -> Any:
        text = str(args.get("text", ""))
        [vector] = await embed(settings.embedding_model, [text])
        return {"id": await store.remember(collection, text, vector, {"node_id": ctx.node_id})}

    tools = [
        Tool(
            f"search_{collection}",
            f"Search the {collection} memory for what is relevant to a query.",
            _one_string("query", "What to look for."),
            search,
        )
    ]
    if settings.writable:
        tools.append(
            Tool(
                f"remember_{collection}",
                f"Store a fact in the {collection} memory for later runs.",
                _one_string("text", "The fact, in a sentence or two."),
                remember,
                risk="write",
            )
        )
    return tools


def _one_string(name: str, description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string", "description": description, "maxLength": 8000}},
        "required": [name],
    }


def _tokens(turns: list[Turn]) -> int:
    return sum(len(t.content) for t in turns) // 4


def _spec(subtype: str, parameters: type[ParametersModel], description: str) -> NodeSpec:
    return register(
        NodeSpec(
            type=NodeType.MEMORY,
            subtype=subtype,
            description=description,
            parameters=parameters,
            kind="attachment",
            inputs=(),
            outputs=(MEMORY_PORT,),
        )
    )


CONVERSATION = _spec(
    "CONVERSATION",
    ConversationMemory,
    "The agent's conversation per key, across runs: recent turns and a running summary.",
)
VECTOR = _spec(
    "VECTOR", VectorMemory, "Texts with embeddings the agent searches and adds to, as tools."
)
