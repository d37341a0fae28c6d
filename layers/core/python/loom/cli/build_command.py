"""``loom build "describe the workflow"``: the builder conversation in the terminal.

Each turn prints the explanation, open questions, gaps and (after the first) the diff,
and writes the draft to ``--out``; in a terminal it then asks for a refinement until an
empty line. Without ``--model`` or ``LOOM_BUILDER_MODEL`` it drafts with the offline tiny
model, so it works with no keys (and drafts roughly).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from loom.config import Settings, load_settings
from loom.errors import LoomError

OFFLINE_MODEL = "local/smollm2-135m-instruct"


def build(
    description: Annotated[str, typer.Argument(help="What the workflow should do.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the workflow (JSON).")
    ] = Path("workflow.json"),
    model: Annotated[
        str | None,
        typer.Option(
            help=f"provider/model to draft with (default: LOOM_BUILDER_MODEL, else "
            f"{OFFLINE_MODEL})."
        ),
    ] = None,
    credential: Annotated[
        str | None, typer.Option(help="An llm_api_key credential id for the model.")
    ] = None,
    save: Annotated[
        bool, typer.Option("--save", help="Also save it as a workflow in the local workspace.")
    ] = False,
    interactive: Annotated[
        bool | None,
        typer.Option(
            "--interactive/--no-interactive",
            help="Ask for refinements after each turn (default: when stdin is a terminal).",
        ),
    ] = None,
) -> None:
    """Describe a workflow in plain language; refine it by conversation; get a valid file."""
    settings = load_settings()
    chosen = model or settings.builder_model or OFFLINE_MODEL
    asking = sys.stdin.isatty() if interactive is None else interactive
    asyncio.run(_converse(settings, description, chosen, credential, out, save, asking))


async def _converse(
    settings: Settings,
    description: str,
    model: str,
    credential: str | None,
    out: Path,
    save: bool,
    asking: bool,
) -> None:
    from loom.builder import sessions
    from loom.runtime.local.platform import local_platform

    async with local_platform(settings) as platform:
        db, workspace, llm = platform.db, platform.workspace_id, platform.runner.llm
        assert llm is not None
        choice = sessions.choose_model(model, credential, settings)
        plan = await asyncio.to_thread(sessions.open_session, db, workspace, description, choice)
        typer.echo(f"Builder session {plan.session_id}, drafting with {model}.")
        drafted = await _turn(sessions.run_turn(db, llm, settings, plan), out, fatal=not asking)
        while asking:
            message = typer.prompt("Refine (empty to finish)", default="", show_default=False)
            if not message.strip():
                break
            try:
                plan = await asyncio.to_thread(
                    sessions.plan_message, db, workspace, plan.session_id, message
                )
            except LoomError as exc:
                typer.secho(f"error: {exc.one_line()}", err=True, fg=typer.colors.RED)
                continue
            drafted = await _turn(sessions.run_turn(db, llm, settings, plan), out) or drafted
        if not drafted:
            raise LoomError(
                "No valid workflow was drafted; nothing was written.",
                solution="Describe the steps and apps more concretely, or use --model with a "
                "stronger model.",
            )
        if save:
            saved = await asyncio.to_thread(sessions.save_session, db, workspace, plan.session_id)
            typer.secho(
                f"Saved as workflow {saved['workflow_id']} version {saved['version']}.",
                fg=typer.colors.GREEN,
            )


async def _turn(events: Any, out: Path, *, fatal: bool = False) -> bool:
    """Print one turn as it happens; write its draft. False when it drafted nothing."""
    from loom.builder.drafting import Repair
    from loom.builder.sessions import TurnDone

    try:
        async for event in events:
            if isinstance(event, Repair):
                typer.echo(f"  repairing ({len(event.problems)} problem(s), round {event.round})")
            elif isinstance(event, TurnDone):
                _show(event.turn, out)
                return True
    except LoomError as exc:
        if fatal:
            raise
        typer.secho(f"error: {exc.one_line()}", err=True, fg=typer.colors.RED)
    return False


def _show(turn: dict[str, Any], out: Path) -> None:
    out.write_text(json.dumps(turn["draft"], indent=2, ensure_ascii=False) + "\n")
    draft = turn["draft"]
    typer.secho(
        f"\nDraft {turn['turn']}: {draft['name']} ({len(draft['nodes'])} nodes, "
        f"{len(draft['edges'])} edges; {turn['repair_rounds']} repair round(s)) -> {out}",
        fg=typer.colors.GREEN,
    )
    if turn.get("diff"):
        typer.echo(f"Changes: {turn['diff']['summary']}")
    if turn["explanation"]:
        typer.echo(turn["explanation"])
    for question in turn["questions"]:
        typer.echo(f"  ? {question}")
    for gap in turn["gaps"]:
        typer.secho(f"  gap: {gap['what']} Next: {gap['next_step']}", fg=typer.colors.YELLOW)
    if turn.get("notice"):
        typer.echo(f"  note: {turn['notice']}")
