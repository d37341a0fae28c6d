"""What each HTTP trigger accepts: verify the signature first, then the content type, then
the body, then the trigger's event filter.

A source turns a delivery into an ``Accepted`` event (its run input, its delivery id, and
the keys that make a replay recognisable) or an ``Answer`` to send back without starting
anything (Slack's URL challenge, GitHub's ping, an event the filter leaves out).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from loom import signing
from loom.engine.values import find_nul
from loom.nodes.trigger_github import GitHubParameters
from loom.nodes.trigger_slack import SlackParameters
from loom.nodes.trigger_webhook import WebhookParameters
from loom.triggers.errors import BodyRejected, WrongContentType
from loom.triggers.events import delivery_id
from loom.triggers.signatures import verify_github, verify_slack

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
_GITHUB_EVENT = re.compile(r"[a-z_]{1,64}")

# Never copied into a run's input: credentials and signatures.
_HIDDEN_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "proxy-authorization",
        "x-api-key",
        "x-loom-signature",
        "x-hub-signature",
        "x-hub-signature-256",
        "x-slack-signature",
    }
)


@dataclass(frozen=True)
class HttpDelivery:
    body: bytes
    headers: Mapping[str, str]  # names in lower case
    received_at: datetime
    query: Mapping[str, str] = field(default_factory=dict)

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class Accepted:
    input: Any
    delivery_id: str
    replay_keys: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    body: dict[str, Any]


def _keys(signed: str, given_id: str | None) -> tuple[str, tuple[str, ...]]:
    """The delivery id (the sender's, else the signature) and the replay keys: the signed
    request itself, and the sender's delivery id when there is one."""
    if given_id:
        chosen = delivery_id(given_id)
        return chosen, (f"sig:{signed}", f"id:{chosen}")
    return f"sig:{signed}", (f"sig:{signed}",)


def _require_type(delivery: HttpDelivery, *allowed: str) -> str:
    media = delivery.media_type
    if media not in allowed:
        sent = media or "no content type"
        raise WrongContentType(
            f"This trigger accepts {' or '.join(allowed)}; the request sent {sent}.",
            solution=f"Send Content-Type: {allowed[0]}, or change the trigger's content_type.",
        )
    return media


def parse_json(body: bytes) -> Any:
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "it is not JSON text"
        raise BodyRejected(
            f"The body is not valid JSON: {reason}.", solution="Send a JSON document."
        ) from None
    nul = find_nul(value, "body")
    if nul is not None:
        raise BodyRejected(
            f"The body holds a NUL character at {nul}.",
            solution="Remove NUL (\\u0000) characters; they cannot be stored.",
        )
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _text(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyRejected("The body is not UTF-8 text.", solution="Send UTF-8.") from None
    if "\x00" in text:
        raise BodyRejected("The body holds a NUL character.", solution="Remove it.")
    return text


def parse_form(body: bytes) -> dict[str, Any]:
    try:
        fields = parse_qs(_text(body), keep_blank_values=True, max_num_fields=1000)
    except ValueError as exc:
        raise BodyRejected(f"The form body is not valid: {exc}.", solution="Send a form.") from None
    return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}


def _parse(media: str, body: bytes) -> Any:
    if media == JSON:
        return parse_json(body)
    if media == FORM:
        return parse_form(body)
    return _text(body)


def visible_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name not in _HIDDEN_HEADERS}


def accept_webhook(params: WebhookParameters, secret: bytes, delivery: HttpDelivery) -> Accepted:
    header = delivery.headers.get(signing.HEADER.lower())
    now = delivery.received_at.timestamp()
    timestamp = signing.verify(secret, delivery.body, header, now=now)
    body = _parse(_require_type(delivery, params.content_type), delivery.body)
    chosen, keys = _keys(
        signing.signature(secret, delivery.body, timestamp), delivery.headers.get("x-loom-delivery")
    )
    run_input = {
        "body": body,
        "headers": visible_headers(delivery.headers),
        "query": dict(delivery.query),
        "delivery_id": chosen,
    }
    return Accepted(run_input, chosen, keys)


def accept_github(
    params: GitHubParameters, secret: bytes, delivery: HttpDelivery
) -> Accepted | Answer:
    signed = verify_github(secret, delivery.body, delivery.headers.get("x-hub-signature-256"))
    event = delivery.headers.get("x-github-event", "")
    if not _GITHUB_EVENT.fullmatch(event):
        raise BodyRejected(
            "The X-GitHub-Event header is missing or not an event name.",
            solution="Send deliveries from a GitHub webhook.",
        )
    media = _require_type(delivery, JSON, FORM)
    payload = _parse(media, delivery.body)
    if media == FORM:  # GitHub's form content type carries the JSON in `payload`
        payload = parse_json(str(payload.get("payload", "")).encode())
    if not isinstance(payload, dict):
        raise BodyRejected("The GitHub payload is not a JSON object.", solution="Check the sender.")
    if event == "ping":
        return Answer({"status": "pong"})
    action = payload.get("action") if isinstance(payload.get("action"), str) else None
    name = f"{event}.{action}" if action else event
    if not {"*", event, name} & set(params.events):
        return Answer({"status": "ignored", "event": name})
    chosen, keys = _keys(signed, delivery.headers.get("x-github-delivery"))
    run_input = {"event": event, "action": action, "delivery_id": chosen, "payload": payload}
    return Accepted(run_input, chosen, keys)


def accept_slack(
    params: SlackParameters, secret: bytes, delivery: HttpDelivery
) -> Accepted | Answer:
    signed = verify_slack(
        secret,
        delivery.body,
        delivery.headers.get("x-slack-signature"),
        delivery.headers.get("x-slack-request-timestamp"),
        now=delivery.received_at.timestamp(),
    )
    _require_type(delivery, JSON)
    payload = parse_json(delivery.body)
    if not isinstance(payload, dict):
        raise BodyRejected("The Slack payload is not a JSON object.", solution="Check the sender.")
    kind = payload.get("type")
    if kind == "url_verification":
        return Answer({"challenge": str(payload.get("challenge", ""))})
    event = payload.get("event")
    if kind != "event_callback" or not isinstance(event, dict):
        return Answer({"status": "ignored", "type": str(kind)})
    event_type = str(event.get("type", ""))
    if not {"*", event_type} & set(params.event_types):
        return Answer({"status": "ignored", "event_type": event_type})
    event_id = payload.get("event_id")
    chosen, keys = _keys(signed, event_id if isinstance(event_id, str) else None)
    run_input = {
        "event_type": event_type,
        "event": event,
        "event_id": event_id,
        "team_id": payload.get("team_id"),
        "event_time": payload.get("event_time"),
        "payload": payload,
    }
    return Accepted(run_input, chosen, keys)
