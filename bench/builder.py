"""The workflow builder against a model, over the evaluation set in ``tests/eval``.

For each English description: draft a workflow exactly as ``POST /v1/builder/sessions``
does (the same prompt, schema, validator and repair loop, through the LLM gateway, on a
fresh embedded Postgres with an empty workspace), then score it. Prints, per case and in
total: the share of descriptions that gave a definition that validates, the share whose
structure matches the expected node types and edges, and the repair rounds used.

The default model is the offline tiny one (``local/smollm2-135m-instruct``, 135M
parameters): it needs no network and no key, and its numbers are low. ``--model`` takes
any configured model (keys from ``LOOM_LLM_API_KEYS``). Figures only; nothing is asserted.

    python bench/builder.py [--model provider/name] [--limit N] [--repair-rounds N]
                            [--max-tokens N] [--deadline SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loom.builder.drafting import Drafted, ModelChoice, draft  # noqa: E402
from loom.builder.grounding import first_messages  # noqa: E402
from loom.builder.workspace import Resources  # noqa: E402
from loom.config import Settings, load_settings  # noqa: E402
from loom.db import Database, apply_migrations  # noqa: E402
from loom.errors import LoomError  # noqa: E402
from loom.llm.gateway import LlmGateway  # noqa: E402
from tests.eval.cases import Case, load_cases, structure_matches  # noqa: E402
from tests.utils.pg import start_test_cluster  # noqa: E402

DEFAULT_MODEL = "local/smollm2-135m-instruct"


async def _case(
    llm: LlmGateway, workspace: uuid.UUID, model: str, case: Case, settings: Settings
) -> dict[str, object]:
    started = time.perf_counter()
    messages = first_messages(case.description, Resources())
    result: dict[str, object] = {"id": case.id, "valid": False, "match": False, "rounds": None}
    try:
        async for event in draft(
            llm, workspace, ModelChoice(model), messages, Resources(), settings
        ):
            if isinstance(event, Drafted):
                result.update(
                    valid=True,
                    match=structure_matches(event.definition, case),
                    rounds=event.repair_rounds,
                    nodes=len(event.definition["nodes"]),
                )
    except LoomError as exc:
        first = exc.details[0] if isinstance(exc.details, list) and exc.details else {}
        where = (
            f" at {first.get('path') or '(answer)'}: {first.get('message', '')}" if first else ""
        )
        result["error"] = f"{exc.code}{where}"[:160]
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


async def _run(model: str, cases: list[Case], settings: Settings) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = start_test_cluster(Path(tmp) / "pg")
        apply_migrations(cluster.urls.owner)
        with Database(cluster.urls, min_size=1, max_size=4) as db:
            workspace = uuid.uuid4()
            with db.tenant(workspace) as conn:
                conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'bench')", (workspace,))
            llm = LlmGateway(db, settings=settings)
            results = []
            for case in cases:
                found = await _case(llm, workspace, model, case, settings)
                print(
                    f"  {found['id']:<32} valid={found['valid']!s:<5} match={found['match']!s:<5} "
                    f"rounds={found['rounds']} {found['seconds']} s {found.get('error', '')}",
                    flush=True,
                )
                results.append(found)
            return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N cases.")
    parser.add_argument("--repair-rounds", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--deadline", type=float, default=None, help="Seconds per model call.")
    args = parser.parse_args()
    base = load_settings()
    overrides = {
        name: value
        for name, value in (
            ("builder_repair_rounds", args.repair_rounds),
            ("builder_max_tokens", args.max_tokens),
            ("builder_call_deadline_seconds", args.deadline),
        )
        if value is not None
    }
    settings = base.model_copy(update=overrides)
    cases = load_cases()[: args.limit]
    print(
        f"builder eval: {len(cases)} descriptions, model {args.model}, "
        f"repair bound {settings.builder_repair_rounds}, at most "
        f"{settings.builder_max_tokens} tokens per answer",
        flush=True,
    )
    try:
        results = asyncio.run(_run(args.model, cases, settings))
    finally:
        if args.model.startswith("local/"):
            from loom.llm.local import stop_local_models

            stop_local_models()
    valid = [r for r in results if r["valid"]]
    rounds = [int(str(r["rounds"])) for r in valid]
    total = len(results)
    print(
        f"validate: {len(valid)}/{total} ({100 * len(valid) / total:.0f}%)\n"
        f"structure matches: {sum(bool(r['match']) for r in results)}/{total} "
        f"({100 * sum(bool(r['match']) for r in results) / total:.0f}%)\n"
        f"repair rounds (valid drafts): "
        f"{'mean ' + format(statistics.mean(rounds), '.2f') if rounds else 'n/a'}, "
        f"histogram {dict(sorted({n: rounds.count(n) for n in rounds}.items()))}\n"
        f"failed drafts used the full bound of {settings.builder_repair_rounds} repair rounds; "
        f"seconds per description: median "
        f"{statistics.median(float(str(r['seconds'])) for r in results):.1f}"
    )


if __name__ == "__main__":
    main()
