"""Logging set-up shared by the CLI, ``loom up`` and tests.

Lambda functions use Powertools' Logger (``loom.runtime.aws``); everywhere else the
standard library logs one line per record, tagged with the request id when there is one.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_QUIET = ("httpx", "httpcore", "uvicorn.access", "LiteLLM")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # pgserver logs whole command transcripts on failure; Loom reports those failures
    # itself in one line that names the server log.
    logging.getLogger("pgserver").setLevel(logging.CRITICAL)
