"""Execute one task node: evaluate its parameters, validate them, run it under its
timeout, and turn whatever happens into a ``Finished`` report. Nothing a node does, or
fails to do, escapes as an exception: the engine always gets a result to record."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from loom.engine.advance import Invocation
from loom.engine.run_state import Finished
from loom.engine.values import find_nul
from loom.errors import LoomError
from loom.expressions import ExpressionContext, evaluate
from loom.nodes.base import (
    AgentDesk,
    AgentMemory,
    ChildRuns,
    HumanDesk,
    NodeContext,
    NodeResult,
    NodeServices,
    NodeSpec,
)
from loom.workflows.definition import ERROR_PORT, Node

if TYPE_CHECKING:
    from loom.llm.gateway import LlmGateway

log = logging.getLogger(__name__)


class InvalidParameters(LoomError):
    code = "invalid_parameters"
    status = 422
    retryable = False


class InvalidResult(LoomError):
    code = "invalid_result"
    retryable = False


def prepare_parameters(spec: NodeSpec, node: Node, invocation: Invocation) -> BaseModel:
    raw = node.parameters
    scope = ExpressionContext(
        input=invocation.run_input, nodes=invocation.upstream, run=invocation.run
    )
    eager = {k: v for k, v in raw.items() if k not in spec.deferred}
    values: dict[str, Any] = evaluate(eager, scope, where=f"nodes.{node.id}.parameters")
    values.update({k: v for k, v in raw.items() if k in spec.deferred})
    try:
        return spec.parameters.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"parameter '{'.'.join(str(p) for p in err['loc']) or '(all)'}': {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidParameters(
            f"Node '{node.id}' ({node.type}.{node.subtype}) got invalid parameters: {problems}.",
            solution="Fix the parameters, or the expressions that produce them.",
        ) from None


async def invoke(
    invocation: Invocation,
    children: ChildRuns | None = None,
    services: NodeServices | None = None,
    humans: HumanDesk | None = None,
    llm: LlmGateway | None = None,
    memory: AgentMemory | None = None,
    agents: AgentDesk | None = None,
) -> Finished:
    item = invocation.item
    node = invocation.graph.nodes[item.node_id]
    spec = invocation.graph.specs[item.node_id]
    started = time.perf_counter()

    def report(**fields: Any) -> Finished:
        took = (time.perf_counter() - started) * 1000
        return Finished(item.node_id, item.attempt, duration_ms=took, **fields)

    try:
        if spec.execute is None:
            raise LoomError(
                f"Node type {node.type}.{node.subtype} cannot be executed as a task.",
                solution="Report this as a bug.",
            )
        params = prepare_parameters(spec, node, invocation)
        ctx = NodeContext(
            workspace_id=invocation.workspace_id,
            run_id=invocation.run_id,
            node_run_id=item.node_run_id,
            node_id=item.node_id,
            attempt=item.attempt,
            run_input=invocation.run_input,
            upstream=invocation.upstream,
            run=invocation.run,
            children=children,
            services=services,
            humans=humans,
            attached=invocation.graph.attached.get(item.node_id, ()),
            llm=llm,
            memory=memory,
            agents=agents,
            timeout_seconds=item.timeout_seconds,
        )
        execution = spec.execute(ctx, params, invocation.inputs)
        result = await asyncio.wait_for(execution, item.timeout_seconds)
        return _accept(result, spec, node, report)
    except TimeoutError:
        return report(
            outcome="failed",
            error={
                "code": "timeout",
                "retryable": True,
                "message": f"Node '{node.id}' did not finish within {item.timeout_seconds:g} s.",
                "solution": "Raise timeout_seconds, or make the node do less.",
            },
        )
    except LoomError as exc:
        return report(outcome="failed", error={**exc.to_dict(), "retryable": exc.retryable})
    except Exception as exc:  # a node's own bug must not stop the engine
        log.warning("node %s raised %s", node.id, type(exc).__name__, exc_info=True)
        return report(
            outcome="failed",
            error={
                "code": "node_error",
                "retryable": True,
                "message": f"Node '{node.id}' failed: {type(exc).__name__}: {exc}"[:2000],
                "solution": "See the node's error and its parameters.",
            },
        )


def _accept(result: NodeResult, spec: NodeSpec, node: Node, report: Any) -> Finished:
    if result.suspend is not None:
        token_hash = hashlib.sha256(result.suspend.token.encode()).hexdigest()
        finished: Finished = report(
            outcome="suspended",
            resume_token_hash=token_hash,
            expires_at=result.suspend.expires_at,
            metadata={**result.metadata, "request": dict(result.suspend.request)},
        )
        return finished
    ports = spec.ports(node.parameters)
    if result.port not in ports and not (result.port == ERROR_PORT and node.on_error == "route"):
        raise InvalidResult(
            f"Node '{node.id}' left by unknown port '{result.port}'.",
            solution="Report this as a bug in the node type.",
        )
    output = _json_value(node.id, result.output)
    done: Finished = report(
        outcome="completed", output=output, port=result.port, metadata=dict(result.metadata)
    )
    return done


def _json_value(node_id: str, value: Any) -> Any:
    """Outputs are JSON: anything else is refused here rather than half-stored later."""
    try:
        normal = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidResult(
            f"Node '{node_id}' produced an output that is not JSON: {exc}.",
            solution="Return only JSON values (objects, lists, strings, numbers, booleans, null).",
        ) from None
    nul = find_nul(normal, "output")
    if nul is not None:
        raise InvalidResult(
            f"Node '{node_id}' produced a NUL character at {nul}.",
            solution="Remove NUL (\\u0000) characters; they cannot be stored.",
        )
    return normal
