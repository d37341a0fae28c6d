"""Domain errors.

Every failure a user can cause or fix is a ``LoomError`` carrying ``{code, message,
solution}``. The API maps them to HTTP statuses in one place (``loom.api.errors``); the CLI
prints ``message`` and ``solution`` on one line. Nothing else should build error text.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LoomError(Exception):
    """Base of every error meant for a user: what went wrong and what to do about it."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    # Whether trying the same thing again may succeed (a node's retry policy asks this).
    retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, solution: str = "", details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.solution = solution
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "solution": self.solution,
        }
        if self.details is not None:
            out["details"] = self.details
        return out

    def one_line(self) -> str:
        return f"{self.message} {self.solution}".strip()


class ConfigError(LoomError):
    code = "config_error"
    status = 500


class DatabaseUnavailable(LoomError):
    code = "database_unavailable"
    status = 503


class NotFound(LoomError):
    code = "not_found"
    status = 404


class Conflict(LoomError):
    code = "conflict"
    status = 409


class InvalidInput(LoomError):
    code = "invalid_input"
    status = 422
    retryable = False


class ValidationFailed(LoomError):
    """A definition or payload with one or more problems; ``details`` lists every one."""

    code = "validation_failed"
    status = 422
    retryable = False


class NotImplementedYet(LoomError):
    """A feature that is named in the product but not built; never a silent fallback."""

    code = "not_implemented"
    status = 501
