"""Node types that exist only in tests: they fail, sleep, count and post on request."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from loom.errors import LoomError
from loom.nodes.base import (
    NodeContext,
    NodeResult,
    NodeSpec,
    ParametersModel,
    Suspension,
    combined_input,
)
from loom.nodes.registry import get_spec, register
from loom.workflows.definition import NodeType

EXECUTIONS: Counter[tuple[str, str]] = Counter()
CONCURRENCY: dict[str, list[int]] = {}


class Flaky(LoomError):
    code = "flaky"


class SpyParameters(ParametersModel):
    tag: str = Field(default="", description="Groups counts of one test.")
    fail_times: int = Field(default=0, ge=0)
    fail_always: bool = False
    sleep: float = Field(default=0, ge=0)
    value: Any = None
    sink_url: str | None = None
    suspend_token: str | None = None


async def _execute(
    ctx: NodeContext, params: SpyParameters, inputs: Mapping[str, Any]
) -> NodeResult:
    key = (params.tag, ctx.node_id)
    EXECUTIONS[key] += 1
    running = CONCURRENCY.setdefault(params.tag, [0, 0])
    running[0] += 1
    running[1] = max(running[1], running[0])
    try:
        if params.sink_url:
            body = json.dumps({"key": ctx.idempotency_key, "node": ctx.node_id}).encode()
            request = urllib.request.Request(params.sink_url, data=body, method="POST")
            await asyncio.to_thread(urllib.request.urlopen, request, timeout=5)
        if params.sleep:
            await asyncio.sleep(params.sleep)
        if params.suspend_token:
            expires = datetime.now(UTC) + timedelta(hours=1)
            return NodeResult(suspend=Suspension(params.suspend_token, expires, {"ask": "ok?"}))
        if params.fail_always or EXECUTIONS[key] <= params.fail_times:
            raise Flaky(f"{ctx.node_id} failed on purpose (execution {EXECUTIONS[key]}).")
        output = params.value if params.value is not None else combined_input(inputs)
        return NodeResult(output=output)
    finally:
        running[0] -= 1


if get_spec(NodeType.ACTION, "TEST") is None:
    register(
        NodeSpec(
            type=NodeType.ACTION,
            subtype="TEST",
            description="Test node: counts, sleeps, fails and posts to a sink on request.",
            parameters=SpyParameters,
            execute=_execute,
        )
    )
