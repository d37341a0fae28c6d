"""Live per-node progress of a run in the terminal (on stderr: stdout is for the output)."""

from __future__ import annotations

from types import TracebackType
from uuid import UUID

from rich.console import Console
from rich.live import Live
from rich.table import Table

from loom.engine.advance import Advance, Engine
from loom.engine.states import NodeStatus

_STYLE = {
    NodeStatus.PENDING: "dim",
    NodeStatus.RUNNING: "yellow",
    NodeStatus.WAITING_INPUT: "magenta",
    NodeStatus.COMPLETED: "green",
    NodeStatus.FAILED: "red",
    NodeStatus.SKIPPED: "dim",
    NodeStatus.CANCELLED: "red",
}


class RunProgress:
    def __init__(self, engine: Engine, run_id: UUID, *, enabled: bool = True) -> None:
        self.engine = engine
        self.run_id = run_id
        self.status = "NEW"
        self._console = Console(stderr=True)
        self._live = (
            Live(self._table(), console=self._console, transient=False, auto_refresh=False)
            if enabled
            else None
        )

    def __enter__(self) -> RunProgress:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self._table(), refresh=True)
            self._live.__exit__(exc_type, exc, tb)
            if not self._console.is_terminal:
                self._console.line()

    def update(self, advance: Advance) -> None:
        if advance.run_id != self.run_id:
            return
        self.status = advance.status.value
        if self._live is not None:
            self._live.update(self._table(), refresh=True)

    def _table(self) -> Table:
        table = Table(title=f"run {self.run_id} · {self.status}", title_justify="left")
        for column in ("node", "type", "status", "attempt"):
            table.add_column(column)
        for node_id, kind, status, attempt in self.engine.snapshot(self.run_id):
            style = _STYLE[status]
            table.add_row(node_id, kind, f"[{style}]{status.value}[/]", str(attempt or ""))
        return table
