"""The signatures GitHub and Slack put on what they send, checked like Loom's own
(``loom.signing``): HMAC-SHA256 with a shared secret, compared in constant time.

- GitHub: ``X-Hub-Signature-256: sha256=<hex>`` over the raw body (no timestamp, so replays
  are caught by delivery id and signature, see ``loom.triggers.receive``).
- Slack v0: ``X-Slack-Signature: v0=<hex>`` over ``v0:<X-Slack-Request-Timestamp>:<body>``,
  with the same 5-minute window as Loom's.

Each ``verify_*`` returns the expected hex digest, which identifies the signed request.
"""

from __future__ import annotations

import hashlib
import hmac

from loom.signing import TOLERANCE_SECONDS, SignatureInvalid

GITHUB_HEADER = "X-Hub-Signature-256"
SLACK_HEADER = "X-Slack-Signature"
SLACK_TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"


def hmac_hex(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _check(expected: str, given: str, header: str, solution: str) -> str:
    if not hmac.compare_digest(expected, given.lower()):
        raise SignatureInvalid(
            f"The {header} signature does not match the body.", solution=solution
        )
    return expected


def _missing(header: str, solution: str) -> SignatureInvalid:
    return SignatureInvalid(f"The {header} header is missing or malformed.", solution=solution)


def verify_github(secret: bytes, body: bytes, header: str | None) -> str:
    solution = "Set the same secret in the GitHub webhook settings as on the Loom trigger."
    scheme, _, given = (header or "").strip().partition("=")
    if scheme != "sha256" or not given:
        raise _missing(GITHUB_HEADER, solution)
    return _check(hmac_hex(secret, body), given, GITHUB_HEADER, solution)


def verify_slack(
    secret: bytes,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> str:
    solution = "Use the app's Signing Secret (Basic Information in the Slack app settings)."
    version, _, given = (signature or "").strip().partition("=")
    stamp = (timestamp or "").strip()
    if version != "v0" or not given or not stamp.isdigit() or len(stamp) > 12:
        raise _missing(f"{SLACK_HEADER} or {SLACK_TIMESTAMP_HEADER}", solution)
    if abs(now - int(stamp)) > tolerance:
        raise SignatureInvalid(
            f"The {SLACK_TIMESTAMP_HEADER} is outside the {tolerance // 60}-minute window.",
            solution="Slack signs each request when it sends it; check this server's clock.",
        )
    expected = hmac_hex(secret, b"v0:" + stamp.encode() + b":" + body)
    return _check(expected, given, SLACK_HEADER, solution)
