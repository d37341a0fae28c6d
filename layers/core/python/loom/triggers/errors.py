"""Why a delivery to a trigger is refused (besides a bad signature: ``loom.signing``)."""

from __future__ import annotations

from loom.errors import LoomError


class TriggerNotFound(LoomError):
    """Unknown, undeployed, or not this kind of trigger: all look the same from outside."""

    code = "not_found"
    status = 404
    retryable = False


class BodyRejected(LoomError):
    """The body is not what the trigger declares."""

    code = "invalid_body"
    status = 400
    retryable = False


class WrongContentType(LoomError):
    code = "unsupported_media_type"
    status = 415
    retryable = False


class BodyTooLarge(LoomError):
    code = "payload_too_large"
    status = 413
    retryable = False
