"""The ``loom`` command line.

Every command turns a ``LoomError`` into one line on stderr and exit code 1; nothing a
user can cause ends in a stack trace.
"""

from __future__ import annotations

import sys

import typer

from loom.cli import build_command, db_commands, up_command, workflow_commands
from loom.config import load_settings
from loom.errors import LoomError
from loom.observability import configure_logging

app = typer.Typer(
    name="loom",
    help="Loom: AI workflows and governed AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _configure() -> None:
    configure_logging(load_settings().log_level)


app.add_typer(db_commands.app, name="db")
app.command("up")(up_command.up)
app.command("validate")(workflow_commands.validate)
app.command("run")(workflow_commands.run)
app.command("nodes")(workflow_commands.nodes)
app.command("build")(build_command.build)


def main() -> None:
    try:
        app()
    except LoomError as exc:
        typer.secho(f"error: {exc.one_line()}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
