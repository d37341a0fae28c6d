"""``loom up``: the local platform."""

from __future__ import annotations

from typing import Annotated

import typer

from loom.config import load_settings


def up(
    port: Annotated[int | None, typer.Option(help="Port for the API (LOOM_API_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Address for the API (LOOM_API_HOST).")] = None,
) -> None:
    """Start the embedded Postgres, apply migrations and serve the API until Ctrl-C."""
    from loom.runtime.local.server import Endpoints, serve  # the API stack, only when serving

    overrides: dict[str, object] = {}
    if port is not None:
        overrides["api_port"] = port
    if host is not None:
        overrides["api_host"] = host
    settings = load_settings().model_copy(update=overrides)

    def announce(endpoints: Endpoints) -> None:
        typer.secho("Loom is up.", fg=typer.colors.GREEN, bold=True)
        typer.echo(f"  API       {endpoints.api}")
        typer.echo(f"  API docs  {endpoints.docs}")
        typer.echo(f"  health    {endpoints.api}/v1/public/health")
        typer.echo(f"  database  {endpoints.database}")
        if endpoints.data_dir:
            typer.echo(f"  data      {endpoints.data_dir}")
        typer.echo("Press Ctrl-C to stop.")

    serve(settings, on_ready=announce)
    typer.echo("Loom stopped.")
