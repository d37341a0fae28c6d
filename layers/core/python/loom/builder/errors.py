"""What the builder refuses, and why, in the one error shape."""

from __future__ import annotations

from loom.errors import LoomError


class TextTooLong(LoomError):
    """A description or message over the limit: refused before anything is stored."""

    code = "text_too_long"
    status = 413
    retryable = False


class BuilderModelMissing(LoomError):
    code = "builder_model_missing"
    status = 422
    retryable = False


class DraftFailed(LoomError):
    """The model gave no answer that validates within the repair bound; ``details`` holds
    the last problems. Nothing was stored."""

    code = "draft_failed"
    status = 422
    retryable = False


class GapsOpen(LoomError):
    """The draft still needs something the workspace lacks; saving would store a workflow
    that cannot run."""

    code = "builder_gaps_open"
    status = 409
    retryable = False


class NoDraft(LoomError):
    code = "builder_no_draft"
    status = 409
    retryable = False


class RunNotFailed(LoomError):
    code = "run_not_failed"
    status = 409
    retryable = False
