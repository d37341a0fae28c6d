"""The local queue consumer inside ``loom up`` (an SQS event source mapping on AWS): takes
due events from the intake queue - retries, events released by a lease, replayed dead
letters, events a crashed process held - and hands each to its topic's handler."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from loom.triggers.queue import EventQueue, Handler, Outcome, deliver

log = logging.getLogger(__name__)

BATCH = 20


class QueueConsumer:
    def __init__(
        self, queue: EventQueue, handlers: Mapping[str, Handler], *, poll_seconds: float = 0.5
    ) -> None:
        self.queue = queue
        self.handlers = dict(handlers)
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loom-intake", daemon=True)

    def drain_once(self) -> list[Outcome]:
        """Handle one batch of due messages, oldest first, one at a time (so the events of
        a queue-policy workflow start in the order they arrived)."""
        messages = self.queue.receive(list(self.handlers), BATCH)
        return [deliver(self.queue, m, self.handlers[m.topic]) for m in messages]

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = bool(self.drain_once())
            except Exception:  # a database hiccup must not end the consumer
                log.exception("taking events from the intake queue failed")
                busy = False
            if not busy:
                self._stop.wait(self.poll_seconds)
