"""Slack Web API: ``chat.postMessage`` with a bot token.

Slack answers most failures with HTTP 200 and ``{"ok": false, "error": "<code>"}``; the
codes are fixed identifiers, so they are quoted and mapped to what they mean here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from loom.config import get_settings
from loom.integrations._http import Service, call_json, excerpt, failure, join, unexpected
from loom.integrations.errors import IntegrationError

SLACK = Service(
    name="Slack",
    credential_type="slack_bot",
    credential_help="a bot token (xoxb-…) of an app installed in the workspace, with chat:write",
)

# Slack error codes, by the HTTP status whose meaning they share.
_AS_STATUS = {
    "invalid_auth": 401,
    "not_authed": 401,
    "account_inactive": 401,
    "token_revoked": 401,
    "token_expired": 401,
    "no_permission": 403,
    "missing_scope": 403,
    "not_allowed_token_type": 403,
    "restricted_action": 403,
    "ekm_access_denied": 403,
    "channel_not_found": 404,
    "not_in_channel": 404,
    "is_archived": 404,
    "ratelimited": 429,
    "internal_error": 500,
    "fatal_error": 500,
    "service_unavailable": 503,
    "request_timeout": 503,
}
_CODE = re.compile(r"[a-z0-9_]{1,64}")


async def post_message(
    *,
    token: str,
    channel: str,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    thread_ts: str | None = None,
    base_url: str | None = None,
    allowlist: Sequence[str] = (),
) -> dict[str, Any]:
    """Post ``text`` (the notification fallback when ``blocks`` are given) to ``channel``;
    return ``{"channel", "ts"}`` as Slack answered them."""
    body: dict[str, Any] = {"channel": channel, "text": text}
    if blocks is not None:
        body["blocks"] = blocks
    if thread_ts is not None:
        body["thread_ts"] = thread_ts
    url = join(base_url or get_settings().slack_api_url, "chat.postMessage")
    answer = await call_json("POST", url, token=token, body=body, allowlist=allowlist)
    data = answer.data
    if answer.status != 200:
        reason = data.get("error") if isinstance(data, dict) else None
        shown = excerpt(reason, token) if isinstance(reason, str) else "no reason given"
        raise failure(
            SLACK,
            answer.status,
            f"Slack answered {answer.status} to chat.postMessage ({shown}).",
            retry_after=answer.retry_after,
        )
    if not isinstance(data, dict) or "ok" not in data:
        raise unexpected(SLACK, answer, 'an "ok" field')
    if data["ok"] is not True:
        raise _refusal(data.get("error"), channel, answer.retry_after)
    if not isinstance(data.get("channel"), str) or not isinstance(data.get("ts"), str):
        raise unexpected(SLACK, answer, "the channel and ts of the message")
    return {"channel": data["channel"], "ts": data["ts"]}


def _refusal(code: Any, channel: str, retry_after: float | None) -> IntegrationError:
    code = code if isinstance(code, str) and _CODE.fullmatch(code) else "unknown_error"
    status = _AS_STATUS.get(code, 400)
    return failure(
        SLACK,
        status,
        f"Slack refused to post to {channel[:80]!r}: {code}.",
        retry_after=retry_after,
        not_found=f"Check the channel id, and invite the bot to {channel[:80]!r} "
        "(/invite @your-app); archived channels take no messages.",
    )
