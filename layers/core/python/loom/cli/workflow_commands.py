"""``loom validate`` and ``loom run``: workflow files from the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from loom.config import load_settings
from loom.errors import InvalidInput, LoomError, ValidationFailed


def _read_definition(path: Path) -> Any:
    from loom.workflows.validation import parse_json

    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"Cannot read {path}: {exc.strerror}.", solution="Check the file path."
        ) from None
    return parse_json(text)


def _print_problems(path: Path, exc: ValidationFailed) -> None:
    typer.secho(f"{path}: {exc.message}", err=True, fg=typer.colors.RED)
    for problem in exc.details or []:
        where = problem.get("path") or "(definition)"
        typer.echo(f"  {where}: {problem['message']}", err=True)


def validate(path: Annotated[Path, typer.Argument(help="A workflow definition (JSON).")]) -> None:
    """Check a workflow definition and list every problem with its path."""
    from loom.workflows.validation import validate_definition

    try:
        definition = validate_definition(_read_definition(path))
    except ValidationFailed as exc:
        _print_problems(path, exc)
        raise typer.Exit(1) from None
    typer.secho(
        f"{path}: valid ({len(definition.nodes)} nodes, {len(definition.edges)} edges)",
        fg=typer.colors.GREEN,
    )


def nodes() -> None:
    """Print the node catalogue (types, parameters as JSON Schema, ports) as JSON."""
    from loom.nodes.registry import catalogue

    typer.echo(json.dumps(catalogue(), indent=2))


def run(
    path: Annotated[Path, typer.Argument(help="A workflow definition (JSON).")],
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="The run input as JSON (default: the manual trigger's sample_input, else {}).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the output.")] = False,
) -> None:
    """Save the workflow (a new version only if it changed), run it on the local engine
    with live progress, and print its output as JSON."""
    from loom.workflows.validation import validate_definition

    try:
        raw = validate_definition(_read_definition(path)).to_json()
    except ValidationFailed as exc:
        _print_problems(path, exc)
        raise typer.Exit(1) from None
    try:
        run_input = json.loads(input) if input is not None else _sample_input(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"--input is not JSON: {exc.msg} at column {exc.colno}.",
            solution="Quote it for your shell, e.g. --input '{\"a\": 1}'.",
        ) from None
    status, output, error = asyncio.run(_run(raw, run_input, quiet=quiet))
    if status == "SUCCESS":
        typer.echo(json.dumps(output, indent=2, ensure_ascii=False))
        return
    detail = error or {}
    where = f" at node '{detail['node_id']}'" if detail.get("node_id") else ""
    raise LoomError(
        f"Run {status.lower()}{where}: {detail.get('message', status)}",
        solution=detail.get("solution", ""),
    )


def _sample_input(definition: dict[str, Any]) -> Any:
    for node in definition["nodes"]:
        if (node["type"], node["subtype"]) == ("TRIGGER", "MANUAL"):
            sample = node.get("parameters", {}).get("sample_input")
            if sample is not None:
                return sample
    return {}


async def _run(raw: dict[str, Any], run_input: Any, *, quiet: bool) -> tuple[str, Any, Any]:
    from loom.cli.progress import RunProgress
    from loom.runtime.local.platform import local_platform
    from loom.workflows.service import save_by_name

    settings = load_settings()
    async with local_platform(settings) as platform:
        saved = await asyncio.to_thread(save_by_name, platform.db, platform.workspace_id, raw)
        started = platform.start(saved.workflow_id, run_input)
        with RunProgress(platform.engine, started.run_id, enabled=not quiet) as progress:
            platform.runner.on_advance = progress.update
            state = await platform.runner.drive(platform.workspace_id, started.run_id)
        return state.status.value, state.output, state.error
