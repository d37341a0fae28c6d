"""Gap analysis: what a draft needs that the workspace lacks, each with a next step.

Credentials and workflows are checked here, against the workspace, never taken on the
model's word: a credential id the workspace has (or a credential's name) is kept as its id;
when exactly one credential of the needed type exists, it is used; otherwise the setting is
replaced by a marker (``missing:<type>``, or the nil UUID where the parameter is a UUID) and
reported as a gap, so the draft marks the node instead of inventing a setting. Workflows
used as tools and governed agents (``agent_id``) are checked the same way. Capability gaps
(and agents the request needs but the draft does not name) come from the model, which knows
what the words asked for; gaps that marked a setting block saving.

``mark`` runs on every turn and again before a save, so a credential created in between
fills its marker.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from loom.builder.workspace import Resources

MISSING = "missing"
NIL_UUID = "00000000-0000-0000-0000-000000000000"
# Kinds checked here; the model's own gaps of these kinds are replaced by the checks.
CHECKED = frozenset({"credential", "workflow"})
MAX_MODEL_GAPS = 20
MAX_GAP_TEXT = 1000

_HTTP_AUTH = ("bearer_token", "basic", "api_key", "oauth2_client")
_CHANNEL_TYPES = {"slack": "slack_bot", "email": "smtp", "webhook": "webhook_secret"}


@dataclass(frozen=True)
class Need:
    """A parameter that names a credential of one of ``kinds``."""

    path: tuple[str, ...]
    kinds: tuple[str, ...]
    uuid: bool = False
    optional: bool = False


_NEEDS: dict[tuple[str, str], tuple[Need, ...]] = {
    ("EXTERNAL_ACTION", "SLACK"): (Need(("credential_id",), ("slack_bot",)),),
    ("EXTERNAL_ACTION", "EMAIL"): (Need(("credential_id",), ("smtp",)),),
    ("EXTERNAL_ACTION", "GITHUB"): (Need(("credential_id",), ("github_token",)),),
    ("EXTERNAL_ACTION", "NOTION"): (Need(("credential_id",), ("notion_token",)),),
    ("ACTION", "HTTP_REQUEST"): (Need(("auth", "credential_id"), _HTTP_AUTH, optional=True),),
    ("AI_AGENT", "AGENT"): (Need(("credential_id",), ("llm_api_key",), optional=True),),
    ("TOOL", "MCP"): (Need(("credential_id",), ("bearer_token",), optional=True),),
    ("TRIGGER", "SLACK"): (Need(("signing_secret_credential",), ("webhook_secret",), uuid=True),),
}

_NEXT_STEP = {
    "slack_bot": "a Slack bot token with the chat:write scope",
    "smtp": "the SMTP server, user and password to send mail with",
    "github_token": "a GitHub token that may write issues in the repository",
    "notion_token": "a Notion integration token shared with the page or database",
    "llm_api_key": "an API key of the model provider",
    "bearer_token": "the API's bearer token",
    "webhook_secret": "the signing secret the sending app shows",
}


@dataclass
class Marked:
    definition: dict[str, Any]
    gaps: list[dict[str, Any]]
    questions: list[str]


def mark(definition: dict[str, Any], resources: Resources, model_gaps: Any = None) -> Marked:
    """Check every credential and workflow a draft names against the workspace; mark
    what is missing. ``definition`` is the raw answer (it may not validate yet)."""
    out = copy.deepcopy(definition)
    found = Marked(out, [], [])
    nodes = out.get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict) or not isinstance(node.get("parameters"), dict):
            continue
        key = (str(node.get("type")), str(node.get("subtype")))
        for need in _NEEDS.get(key, ()):
            _check_need(node, need, resources, found)
        if key[0] == "HUMAN_IN_THE_LOOP":
            _check_channels(node, resources, found)
        if key == ("TOOL", "WORKFLOW"):
            _check_workflow(node, resources, found)
        if key == ("AI_AGENT", "AGENT") and node["parameters"].get("agent_id") is not None:
            _check_agent(node, resources, found)
    found.gaps += _from_model(model_gaps)
    return found


def blocking(gaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gaps that marked a setting: a run would fail there, so the draft is not saved."""
    return [g for g in gaps if "parameter" in g]


def _check_need(node: dict[str, Any], need: Need, resources: Resources, found: Marked) -> None:
    holder: Any = node["parameters"]
    for key in need.path[:-1]:
        holder = holder.get(key) if isinstance(holder, dict) else None
    if not isinstance(holder, dict):
        return
    field = need.path[-1]
    value = holder.get(field)
    if value is None and need.optional:
        return
    where = ".".join(need.path)
    _resolve(node, holder, field, where, need.kinds, need.uuid, resources, found)


def _check_channels(node: dict[str, Any], resources: Resources, found: Marked) -> None:
    channels = node["parameters"].get("channels")
    for index, channel in enumerate(channels if isinstance(channels, list) else []):
        if not isinstance(channel, dict) or channel.get("type") not in _CHANNEL_TYPES:
            continue
        kind = _CHANNEL_TYPES[str(channel["type"])]
        field = "secret_credential_id" if kind == "webhook_secret" else "credential_id"
        where = f"channels[{index}].{field}"
        _resolve(node, channel, field, where, (kind,), False, resources, found)


def _resolve(
    node: dict[str, Any],
    holder: dict[str, Any],
    field: str,
    where: str,
    kinds: tuple[str, ...],
    uuid: bool,
    resources: Resources,
    found: Marked,
) -> None:
    value = str(holder.get(field) or "")
    usable = [c for kind in kinds for c in resources.credentials_of(kind)]
    match = next((c for c in usable if value in (c["id"], c["name"])), None)
    if match is None and len(usable) == 1:
        match = usable[0]
    if match is not None:
        holder[field] = match["id"]
        return
    holder[field] = NIL_UUID if uuid else f"{MISSING}:{kinds[0]}"
    node_id = str(node.get("id"))
    what = " or ".join(kinds)
    if usable:
        names = ", ".join(f"{c['name']} ({c['id']})" for c in usable)
        found.questions.append(f"Which {what} credential should node '{node_id}' use: {names}?")
        step = f'Say which one in a message, e.g. "use {usable[0]["name"]} for {node_id}".'
        message = f"Node '{node_id}' needs one of the workspace's {what} credentials."
    else:
        needed = _NEXT_STEP.get(kinds[0], "its secret")
        step = (
            f"Create a {kinds[0]} credential with {needed} (POST /v1/credentials), then send "
            "any message or save: Loom fills it in."
        )
        message = f"Node '{node_id}' needs a {what} credential; this workspace has none."
    found.gaps.append(
        {
            "kind": "credential",
            "node_id": node_id,
            "parameter": f"parameters.{where}",
            "credential_type": kinds[0],
            "what": message,
            "next_step": step,
        }
    )


def _check_workflow(node: dict[str, Any], resources: Resources, found: Marked) -> None:
    params = node["parameters"]
    value = str(params.get("workflow_id") or "")
    by_name = {w["name"]: w["id"] for w in resources.workflows}
    if value in resources.workflow_ids():
        return
    if value in by_name:
        params["workflow_id"] = by_name[value]
        return
    params["workflow_id"] = NIL_UUID
    node_id = str(node.get("id"))
    found.gaps.append(
        {
            "kind": "workflow",
            "node_id": node_id,
            "parameter": "parameters.workflow_id",
            "what": f"Node '{node_id}' uses a workflow as a tool that this workspace lacks.",
            "next_step": "Build and save that workflow first, then name it in a message.",
        }
    )


def _check_agent(node: dict[str, Any], resources: Resources, found: Marked) -> None:
    params = node["parameters"]
    value = str(params.get("agent_id"))
    match = next((a for a in resources.agents if value in (a["id"], a["name"])), None)
    if match is not None:
        params["agent_id"] = match["id"]
        return
    params["agent_id"] = NIL_UUID
    node_id = str(node.get("id"))
    found.gaps.append(
        {
            "kind": "agent",
            "node_id": node_id,
            "parameter": "parameters.agent_id",
            "what": f"Node '{node_id}' runs a governed agent this workspace does not have.",
            "next_step": "Create the agent (POST /v1/agents), then name it in a message; or "
            "say that the node should call a model directly.",
        }
    )


def _from_model(gaps: Any) -> list[dict[str, Any]]:
    """The model's capability and agent gaps, trimmed; its credential and workflow gaps are
    replaced by the checks above."""
    kept: list[dict[str, Any]] = []
    for gap in gaps if isinstance(gaps, list) else []:
        if not isinstance(gap, dict) or gap.get("kind") in CHECKED:
            continue
        entry = {
            "kind": str(gap.get("kind", "capability")),
            "what": _text(gap.get("what")),
            "next_step": _text(gap.get("next_step")),
        }
        if gap.get("node_id"):
            entry["node_id"] = _text(gap["node_id"])[:64]
        kept.append(entry)
    return kept[:MAX_MODEL_GAPS]


def _text(value: Any) -> str:
    return str(value or "").strip()[:MAX_GAP_TEXT]
