"""Workspace settings people may change: the outbound allowlist (the internal hosts this
workspace's nodes may call; see ``loom.net``), the monthly model budget (``llm_budget``;
see ``loom.llm.budget``) and overrides of the agents' governance policy (``agent_policy``;
see ``loom.agents.governance``). Admins and owners change them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from loom.agents.governance import Policy, parse_overrides
from loom.auth.principal import Principal, Role
from loom.auth.service import require_user
from loom.db import Database
from loom.errors import ValidationFailed
from loom.net.errors import OutboundError

MAX_ALLOWLIST_ENTRIES = 100


def get_settings(db: Database, principal: Principal) -> dict[str, Any]:
    require_user(principal, Role.VIEWER)
    with db.tenant(principal.workspace_id) as conn:
        row = conn.execute("SELECT settings FROM workspaces").fetchone()
    stored = row["settings"] if row else {}
    hosts = stored.get("outbound_allowlist") if isinstance(stored, dict) else None
    found: dict[str, Any] = {"outbound_allowlist": list(hosts) if isinstance(hosts, list) else []}
    budget = stored.get("llm_budget") if isinstance(stored, dict) else None
    if isinstance(budget, dict):
        found["llm_budget"] = budget
    overrides = stored.get("agent_policy") if isinstance(stored, dict) else None
    found["agent_policy"] = Policy(overrides if isinstance(overrides, dict) else None).table()
    return found


def update_settings(
    db: Database,
    principal: Principal,
    *,
    outbound_allowlist: Sequence[str] | None = None,
    llm_budget: dict[str, Any] | None = None,
    agent_policy: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Replace the settings given (None: unchanged) in one transaction, after checking
    every allowlist entry; nothing changes if one is bad. Entries are stored normalised
    (``host`` or ``host:port``, IPv6 in brackets). A budget whose ``monthly_usd`` is None
    is removed."""
    require_user(principal, Role.ADMIN)
    normalised = _normalised(outbound_allowlist) if outbound_allowlist is not None else None
    if agent_policy is not None:
        parse_overrides(agent_policy)
    with db.tenant(principal.workspace_id) as conn:
        if agent_policy is not None:
            conn.execute(
                "UPDATE workspaces SET settings = jsonb_set(settings, '{agent_policy}', %s)",
                (Jsonb(agent_policy),),
            )
        if normalised is not None:
            conn.execute(
                "UPDATE workspaces SET settings = jsonb_set(settings, '{outbound_allowlist}', %s)",
                (Jsonb(normalised),),
            )
        if llm_budget is not None and llm_budget.get("monthly_usd") is None:
            conn.execute("UPDATE workspaces SET settings = settings - 'llm_budget'")
        elif llm_budget is not None:
            conn.execute(
                "UPDATE workspaces SET settings = jsonb_set(settings, '{llm_budget}', %s)",
                (Jsonb(llm_budget),),
            )
    return get_settings(db, principal)


def _normalised(entries: Sequence[str]) -> list[str]:
    if len(entries) > MAX_ALLOWLIST_ENTRIES:
        raise ValidationFailed(
            f"The allowlist has {len(entries)} entries; at most {MAX_ALLOWLIST_ENTRIES}.",
            solution="Allow fewer hosts; allow a host without a port to admit all its ports.",
        )
    # Only a changed allowlist is parsed, with httpx's URL rules: not imported with the API.
    from loom.net.policy import parse_allowlist_entry

    problems: list[dict[str, str]] = []
    normalised: list[str] = []
    for index, entry in enumerate(entries):
        try:
            host, port = parse_allowlist_entry(entry)
        except OutboundError as exc:
            problems.append({"path": f"outbound_allowlist.{index}", "message": exc.message})
            continue
        shown = f"[{host}]" if ":" in host else host
        text = f"{shown}:{port}" if port is not None else shown
        if text not in normalised:
            normalised.append(text)
    if problems:
        raise ValidationFailed(
            f"{len(problems)} allowlist entr{'y is' if len(problems) == 1 else 'ies are'} invalid.",
            solution="Write each entry as host, host:port or [IPv6]:port.",
            details=problems,
        )
    return normalised
