"""``loom db``: migrations, connection URL, reset."""

from __future__ import annotations

from typing import Annotated

import typer

from loom.config import load_settings
from loom.db import apply_migrations, resolve_urls
from loom.db.urls import as_url
from loom.errors import LoomError

app = typer.Typer(help="Manage the database.", no_args_is_help=True)


@app.command("migrate")
def migrate() -> None:
    """Apply pending migrations (safe to run from several processes at once)."""
    settings = load_settings()
    urls = resolve_urls(settings)
    password = settings.app_db_password.get_secret_value() if settings.app_db_password else None
    applied = apply_migrations(urls.owner, app_password=password)
    if applied:
        typer.echo(f"Applied {len(applied)} migration(s): {', '.join(applied)}.")
    else:
        typer.echo("Database is up to date.")


@app.command("url")
def url() -> None:
    """Print the owner connection URL (for psql and other tools)."""
    typer.echo(as_url(resolve_urls(load_settings()).owner))


@app.command("reset")
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the embedded database and all local data in it."""
    from loom.db.embedded import reset_embedded

    settings = load_settings()
    if settings.database_url:
        raise LoomError(
            "`loom db reset` only resets the embedded database, and DATABASE_URL is set.",
            solution="Unset DATABASE_URL, or drop and recreate that database yourself.",
        )
    target = settings.pg_data_dir
    if not yes and not typer.confirm(f"Delete {target} and every run, workflow and key in it?"):
        typer.echo("Nothing deleted.")
        raise typer.Exit(1)
    reset_embedded(target)
    typer.echo(f"Deleted {target}. The next `loom up` creates a fresh database.")
