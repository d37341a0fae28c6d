"""The node functions: execute one node run the state machine hands over.

A task returns its report. A HUMAN_IN_THE_LOOP node runs under ``waitForTaskToken``: it
files its request together with the execution's task token, records that it waits, and
returns; the answer (or the timeout) completes the task later. If it does not suspend
(it failed), it completes its own task with the report at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

import loom.runtime.aws.runner  # noqa: F401 - every invocation runs a node (build_runner)
from loom.engine.hil import HilDesk
from loom.engine.run_state import Finished
from loom.runtime.aws.clients import client
from loom.runtime.aws.platform import AwsPlatform
from loom.runtime.aws.wire import stage, stale

if TYPE_CHECKING:
    from loom.engine.runner import LocalRunner

DEFAULT_INLINE = 160 * 1024


def run_node(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    return _run_task(platform, platform.runner, event)


def run_agent_node(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    """AI_AGENT nodes: executed with the model gateway."""
    return _run_task(platform, platform.model_runner, event)


def run_human(platform: AwsPlatform, event: Mapping[str, Any]) -> dict[str, Any]:
    workspace_id, run_id = UUID(str(event["workspace_id"])), UUID(str(event["run_id"]))
    token = str(event["task_token"])
    finished = _execute(platform, platform.runner, workspace_id, run_id, event["item"], token)
    if finished.outcome == "suspended":
        platform.engine.advance(workspace_id, run_id, [finished])
        return {"waiting": finished.node_id}
    inline = int(event.get("inline_bytes") or DEFAULT_INLINE)
    report = stage(finished, inline, platform.blobs, workspace_id, run_id)
    client("stepfunctions").send_task_success(taskToken=token, output=json.dumps(report))
    return report


def _run_task(
    platform: AwsPlatform, runner: LocalRunner, event: Mapping[str, Any]
) -> dict[str, Any]:
    workspace_id, run_id = UUID(str(event["workspace_id"])), UUID(str(event["run_id"]))
    finished = _execute(platform, runner, workspace_id, run_id, event["item"], None)
    inline = int(event.get("inline_bytes") or DEFAULT_INLINE)
    return stage(finished, inline, platform.blobs, workspace_id, run_id)


def _execute(
    platform: AwsPlatform,
    runner: LocalRunner,
    workspace_id: UUID,
    run_id: UUID,
    item: Mapping[str, Any],
    task_token: str | None,
) -> Finished:
    node_id, attempt = str(item["node_id"]), int(item["attempt"])
    invocation = platform.engine.invocation(workspace_id, run_id, node_id, attempt)
    if invocation is None:
        return stale(node_id, attempt)
    desk = None
    if task_token is not None:
        desk = HilDesk(platform.db, workspace_id, platform.settings.base_url, task_token)
    return platform.run(runner.execute(invocation, humans=desk))
