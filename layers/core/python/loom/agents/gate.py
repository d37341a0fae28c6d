"""Governance inside the tool loop: each call is decided by the policy before it runs.

A call the policy allows runs; one it denies is refused with the reason; one that needs a
person files a tool approval (a human-in-the-loop request of the episode, answered at
``POST /v1/hil/{id}/respond`` or through its one-time link) and waits for the answer, up
to the spec's approval timeout and never past the execution's own deadline. Every
decision is kept for the episode and its audit log.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from loom.agents.governance import Decision, Maturity, Policy, Risk, Verdict
from loom.agents.loop import Emit
from loom.db import Database
from loom.db import hil as hil_repo
from loom.engine.hil import link_token_hash
from loom.llm.calls import ToolCall
from loom.nodes.agent_tools import Tool

FIRST_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 1.0


@dataclass
class GovernanceGate:
    """``loom.agents.loop.Gate`` for one episode."""

    db: Database
    workspace_id: UUID
    episode_id: UUID
    run_id: UUID | None
    agent_name: str
    maturity: Maturity
    policy: Policy
    approval_timeout_seconds: float
    deadline: float | None  # time.monotonic() by which the execution must end
    emit: Emit
    base_url: str
    unattended: bool = False
    decisions: list[dict[str, Any]] = field(default_factory=list)

    async def admit(self, tool: Tool, call: ToolCall) -> str | None:
        decision = self.policy.decide(tool.name, Risk(tool.risk), self.maturity)
        record = decision.record()
        self.decisions.append(record)
        await self.emit("governance", record)
        if decision.verdict is Verdict.ALLOW:
            return None
        if decision.verdict is Verdict.DENY:
            return decision.reason
        approved, why = await self._ask(decision, call)
        record["approval"] = why
        record["verdict"] = "approved" if approved else "refused"
        await self.emit("approval", {"tool": tool.name, "approved": approved, "reason": why})
        return None if approved else why

    async def _ask(self, decision: Decision, call: ToolCall) -> tuple[bool, str]:
        if self.unattended:
            return False, "Nobody attends this execution (an exam) to approve the call."
        wait = self.approval_timeout_seconds
        if self.deadline is not None:
            wait = min(wait, self.deadline - time.monotonic() - 1.0)
        if wait <= 0:
            return False, "There was no time left to ask a person for approval."
        token = secrets.token_urlsafe(32)
        request = {
            "title": f"{self.agent_name} wants to use {decision.tool}",
            "message": decision.reason,
            "tool": decision.tool,
            "risk": decision.risk.value,
            "arguments": call.arguments,
        }
        expires_at = datetime.now(UTC) + timedelta(seconds=wait)
        request_id = await asyncio.to_thread(self._file, request, expires_at, token)
        self.decisions[-1]["request_id"] = str(request_id)
        await self.emit(
            "approval_required",
            {
                "request_id": str(request_id),
                "tool": decision.tool,
                "arguments": call.arguments,
                "link": f"{self.base_url}/v1/public/hil/{token}",
                "expires_at": expires_at.isoformat(),
            },
        )
        settled = await self._settled(request_id, time.monotonic() + wait)
        if settled is None:
            return False, f"Nobody approved the call within {wait:.0f} s."
        if settled["status"] == "approved":
            return True, "A person approved the call."
        return False, "A person rejected the call."

    def _file(self, request: dict[str, Any], expires_at: datetime, token: str) -> UUID:
        with self.db.tenant(self.workspace_id) as conn:
            return hil_repo.file_tool_approval(
                conn,
                workspace_id=self.workspace_id,
                episode_id=self.episode_id,
                run_id=self.run_id,
                request=request,
                expires_at=expires_at,
                link_token_hash=link_token_hash(token),
            )

    async def _settled(self, request_id: UUID, until: float) -> dict[str, Any] | None:
        """The answer, polled with backoff; None (and the request withdrawn) at ``until``."""
        delay = FIRST_POLL_SECONDS
        while True:
            row = await asyncio.to_thread(self._status, request_id)
            if row is not None and row["status"] != "pending":
                return row if row["status"] in ("approved", "rejected") else None
            if time.monotonic() >= until:
                await asyncio.to_thread(self._withdraw, request_id)
                # An answer may have won the race with the withdrawal.
                row = await asyncio.to_thread(self._status, request_id)
                return row if row is not None and row["status"] == "approved" else None
            await asyncio.sleep(min(delay, max(until - time.monotonic(), 0.0)))
            delay = min(delay * 2, MAX_POLL_SECONDS)

    def _status(self, request_id: UUID) -> dict[str, Any] | None:
        with self.db.tenant(self.workspace_id) as conn:
            return hil_repo.settled(conn, request_id)

    def _withdraw(self, request_id: UUID) -> None:
        with self.db.tenant(self.workspace_id) as conn:
            hil_repo.withdraw(conn, request_id)
