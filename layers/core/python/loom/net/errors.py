"""What the outbound choke point refuses, and why: each error names the rule and the way out.

Messages name hosts, ports and addresses, never header values, bodies or query strings, so
no credential can travel in one.
"""

from __future__ import annotations

from loom.errors import LoomError

ALLOWLIST_SOLUTION = (
    "If {where} is an internal service this workspace must call, ask a workspace admin to "
    "add '{where}' to the workspace's outbound allowlist; otherwise call a public address."
)


class OutboundError(LoomError):
    code = "outbound_error"
    status = 502


class InvalidOutboundRequest(OutboundError):
    """The URL or headers are malformed or not allowed (scheme, userinfo, injection)."""

    code = "outbound_invalid_request"
    status = 422
    retryable = False


class OutboundBlocked(OutboundError):
    """The target address is internal (loopback, private, metadata, ...) and not allowlisted."""

    code = "outbound_blocked"
    status = 403
    retryable = False


class OutboundTooLarge(OutboundError):
    code = "outbound_too_large"
    retryable = False


class OutboundTimeout(OutboundError):
    code = "outbound_timeout"
    status = 504


class OutboundConnectionFailed(OutboundError):
    """The name did not resolve, the connection failed, or the peer broke HTTP."""

    code = "outbound_connection_failed"


class OutboundCertificateInvalid(OutboundError):
    """The server's TLS certificate does not verify for the host name in the URL."""

    code = "outbound_certificate_invalid"
    retryable = False


class TooManyRedirects(OutboundError):
    code = "outbound_too_many_redirects"
    retryable = False


class InvalidOutboundResponse(OutboundError):
    """The answer cannot be read: an unsupported or corrupt content encoding."""

    code = "outbound_invalid_response"
    retryable = False
