"""Loom's webhook signature, both ways: ``X-Loom-Signature: t=<unix>,v1=<hex>`` where the hex
is HMAC-SHA256 over ``"<t>." + raw body`` with a shared secret.

Loom signs what it sends (human-in-the-loop webhooks) and checks what it receives (webhook
triggers) with the same rules: a timestamp window against replays of old deliveries, and a
constant-time comparison. Several ``v1`` values may be present while a secret is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from loom.errors import LoomError

HEADER = "X-Loom-Signature"
TOLERANCE_SECONDS = 300


class SignatureInvalid(LoomError):
    code = "signature_invalid"
    status = 401
    retryable = False


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, *, now: float | None = None) -> str:
    """The header value for ``body`` sent at ``now``."""
    timestamp = int(time.time() if now is None else now)
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"


def verify(
    secret: bytes,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> int:
    """Check ``header`` against ``body``; return its timestamp or raise ``SignatureInvalid``
    (the message never says which part was wrong beyond what the sender can fix)."""
    if not header:
        raise SignatureInvalid(
            f"The {HEADER} header is missing.",
            solution="Sign the raw body: t=<unix seconds>,v1=<hex HMAC-SHA256 of 't.body'>.",
        )
    timestamp, candidates = _parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureInvalid(
            f"The {HEADER} timestamp is outside the {tolerance // 60}-minute window.",
            solution="Sign each delivery when it is sent, with a synchronised clock.",
        )
    expected = signature(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureInvalid(
            f"The {HEADER} signature does not match the body.",
            solution="Sign the exact raw body with the trigger's current secret.",
        )
    return timestamp


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise SignatureInvalid(
            f"The {HEADER} header is malformed.",
            solution="Send t=<unix seconds>,v1=<hex signature>.",
        )
    return timestamp, candidates
