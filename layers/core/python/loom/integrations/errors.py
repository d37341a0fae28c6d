"""What a call to Slack, GitHub, Notion or a mail server can fail with, and whether trying
again may help. Messages quote the service's own reason (redacted and cut short), never a
credential."""

from __future__ import annotations

from loom.errors import LoomError


class IntegrationError(LoomError):
    """The service refused the request as sent (400, 409, 410, 422, a 5xx SMTP reply)."""

    code = "integration_rejected"
    status = 502
    retryable = False


class IntegrationAuthFailed(IntegrationError):
    """The credential is invalid, revoked or expired (401, Slack ``invalid_auth``, SMTP 535)."""

    code = "integration_auth_failed"


class IntegrationForbidden(IntegrationError):
    """The credential is valid but may not do this (403, a missing scope)."""

    code = "integration_forbidden"


class IntegrationNotFound(IntegrationError):
    """The repository, channel, page or database does not exist, or is hidden from the
    credential (GitHub answers 404 for private repositories it cannot see)."""

    code = "integration_not_found"


class IntegrationUnavailable(IntegrationError):
    """The service is failing or busy (5xx, a 4xx SMTP reply): later may work."""

    code = "integration_unavailable"
    retryable = True


class IntegrationRateLimited(IntegrationUnavailable):
    """The service asked us to slow down (429), still after the client's own waits."""

    code = "integration_rate_limited"
