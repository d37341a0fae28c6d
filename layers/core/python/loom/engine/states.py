"""Run and node states, and which of them are final."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    NEW = "NEW"
    RUNNING = "RUNNING"
    WAITING_FOR_HUMAN = "WAITING_FOR_HUMAN"
    PAUSED = "PAUSED"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in _RUN_FINAL


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING_INPUT = "waiting_input"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _NODE_FINAL


_RUN_FINAL = frozenset({RunStatus.SUCCESS, RunStatus.ERROR, RunStatus.CANCELLED})
_NODE_FINAL = frozenset(
    {NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED}
)
