"""GitHub's and Slack's signatures, checked against the examples in their documentation,
and Loom's own, which webhook triggers verify."""

from __future__ import annotations

import pytest

from loom import signing
from loom.signing import SignatureInvalid
from loom.triggers.signatures import verify_github, verify_slack

# docs.github.com, "Validating webhook deliveries": testing the implementation.
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# api.slack.com, "Verifying requests from Slack": the walk-through's signing secret, request.
SLACK_SECRET = b"8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
    b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
    b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
    b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_github_documentation_example_verifies() -> None:
    assert verify_github(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE) == GITHUB_SIGNATURE[7:]
    assert verify_github(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE.upper().replace("SHA", "sha"))


@pytest.mark.parametrize(
    ("body", "header"),
    [
        (b"Hello, World?", GITHUB_SIGNATURE),
        (GITHUB_BODY, GITHUB_SIGNATURE[:-1] + "0"),
        (GITHUB_BODY, "sha1=" + GITHUB_SIGNATURE[7:]),
        (GITHUB_BODY, GITHUB_SIGNATURE[7:]),
        (GITHUB_BODY, ""),
        (GITHUB_BODY, None),
    ],
)
def test_github_refuses_changed_bodies_and_bad_headers(body: bytes, header: str | None) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        verify_github(GITHUB_SECRET, body, header)
    assert caught.value.status == 401
    assert "X-Hub-Signature-256" in caught.value.message


def test_slack_documentation_example_verifies_inside_its_window() -> None:
    now = int(SLACK_TIMESTAMP) + 299
    assert verify_slack(SLACK_SECRET, SLACK_BODY, SLACK_SIGNATURE, SLACK_TIMESTAMP, now=now)


@pytest.mark.parametrize(
    ("body", "signature", "timestamp", "now_offset", "reason"),
    [
        (SLACK_BODY + b"x", SLACK_SIGNATURE, SLACK_TIMESTAMP, 0, "does not match"),
        (SLACK_BODY, SLACK_SIGNATURE, str(int(SLACK_TIMESTAMP) + 1), 0, "does not match"),
        (SLACK_BODY, SLACK_SIGNATURE, SLACK_TIMESTAMP, 301, "window"),
        (SLACK_BODY, SLACK_SIGNATURE, SLACK_TIMESTAMP, -301, "window"),
        (SLACK_BODY, "v1=" + SLACK_SIGNATURE[3:], SLACK_TIMESTAMP, 0, "malformed"),
        (SLACK_BODY, SLACK_SIGNATURE, "yesterday", 0, "malformed"),
        (SLACK_BODY, None, SLACK_TIMESTAMP, 0, "malformed"),
    ],
)
def test_slack_refuses_tampering_stale_requests_and_bad_headers(
    body: bytes, signature: str | None, timestamp: str, now_offset: int, reason: str
) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        verify_slack(
            SLACK_SECRET, body, signature, timestamp, now=int(SLACK_TIMESTAMP) + now_offset
        )
    assert reason in caught.value.message


def test_loom_signature_round_trip_window_and_rotation() -> None:
    secret, body = b"s" * 32, b'{"a":1}'
    header = signing.sign(secret, body, now=1_000_000)
    assert signing.verify(secret, body, header, now=1_000_000 + 300) == 1_000_000
    with pytest.raises(SignatureInvalid, match="window"):
        signing.verify(secret, body, header, now=1_000_000 + 301)
    with pytest.raises(SignatureInvalid, match="does not match"):
        signing.verify(b"t" * 32, body, header, now=1_000_000)
    old = signing.sign(b"old-secret", body, now=1_000_000).split(",")[1]
    assert signing.verify(secret, body, f"{header},{old}", now=1_000_000) == 1_000_000
