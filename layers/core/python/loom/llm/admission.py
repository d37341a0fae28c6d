"""What the gateway checks before each attempt: a token from the workspace's bucket and
from the bucket of the provider key it will use, then the budgets.

Buckets live in Postgres, so every process and Lambda shares them; both are taken in one
round trip, and if either is empty the other's token is given back, so no bucket pays for
a call that is not made. A call the budgets refuse has spent its tokens: it was an
attempt. The spend is read in the same round trip, unless this process saw the workspace
without a monthly budget less than 30 s ago and the call has no run budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from loom.config import LlmSettings
from loom.db import Database
from loom.db.llm import Bucket, Spend, admit
from loom.llm.budget import Limits, check
from loom.llm.calls import CallContext
from loom.llm.errors import LlmRateLimited, LlmWorkspaceRateLimited
from loom.llm.targets import Target

BUDGET_CACHE_SECONDS = 30.0
MAX_CACHED = 4096
NOTHING_SPENT = Spend(budget={}, month_usd=0.0, run_usd=0.0)


class Admission:
    def __init__(
        self,
        db: Database,
        settings: LlmSettings,
        *,
        bucket_clock: Callable[[], float] | None = None,
    ) -> None:
        """``bucket_clock`` (epoch seconds) replaces the database's clock for the buckets,
        so tests can let time pass without waiting."""
        self._db = db
        self._settings = settings
        self._bucket_clock = bucket_clock
        # Workspaces seen without a monthly budget, and when: their spend is not read again
        # for 30 s (so a budget set meanwhile applies within that).
        self._unbudgeted: dict[UUID, float] = {}

    def admit(
        self, call: CallContext, target: Target, estimate: Callable[[], float]
    ) -> tuple[Limits, Spend]:
        """Blocking (run it in a thread): the budgets in force and what was spent before
        this call, or the error that refuses it. The prompt is counted for the budgets
        only after the database work, so no bucket row stays locked meanwhile."""
        now = self._bucket_clock() if self._bucket_clock else None
        buckets = [self._workspace_bucket(call.workspace_id), self._provider_bucket(target)]
        read_spend = call.run_budget_usd is not None or self._may_have_budget(call.workspace_id)
        found, (workspace_wait, provider_wait) = admit(
            self._db, call.workspace_id, call.run_id, buckets, now, read_spend=read_spend
        )
        spend = found or NOTHING_SPENT
        if found is not None:
            self._note_budget(call.workspace_id, found)
        if workspace_wait is not None:
            raise LlmWorkspaceRateLimited(
                "This workspace has used its model calls for now "
                f"({self._settings.llm_workspace_calls_per_minute} a minute).",
                solution=f"Try again in {workspace_wait:.1f} s, or ask the operator to raise "
                "LOOM_LLM_WORKSPACE_CALLS_PER_MINUTE.",
                retry_after=workspace_wait,
            )
        if provider_wait is not None:
            raise LlmRateLimited(
                f"Calls to {target.provider} with {target.key_source} are at their limit "
                f"({self._settings.llm_provider_calls_per_minute} a minute).",
                solution=f"Try again in {provider_wait:.1f} s (fallbacks on other providers "
                "are tried first), or ask the operator to raise "
                "LOOM_LLM_PROVIDER_CALLS_PER_MINUTE.",
                retry_after=provider_wait,
            )
        limits = Limits.of(spend, call.run_budget_usd, self._settings.llm_budget_warn_percent)
        if limits.any:
            check(limits, spend, estimate(), target.model)
        return limits, spend

    def _may_have_budget(self, workspace_id: UUID) -> bool:
        seen = self._unbudgeted.get(workspace_id)
        return seen is None or time.monotonic() - seen >= BUDGET_CACHE_SECONDS

    def _note_budget(self, workspace_id: UUID, spend: Spend) -> None:
        if spend.budget.get("monthly_usd") is not None:
            self._unbudgeted.pop(workspace_id, None)
            return
        if len(self._unbudgeted) >= MAX_CACHED:
            self._unbudgeted.clear()
        self._unbudgeted[workspace_id] = time.monotonic()

    def _workspace_bucket(self, workspace_id: UUID) -> Bucket:
        per_minute = self._settings.llm_workspace_calls_per_minute
        return Bucket("calls", per_minute, per_minute / 60, workspace_id)

    def _provider_bucket(self, target: Target) -> Bucket:
        per_minute = self._settings.llm_provider_calls_per_minute
        return Bucket(f"provider:{target.provider}", per_minute, per_minute / 60, target.key_owner)
