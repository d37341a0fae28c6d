"""Step Functions figures.

Runs every example workflow on the Step Functions path (moto's interpreter executing
``statemachines/workflow_run.asl.json``, the real entry points in-process, an embedded
Postgres; see ``tests/utils/aws_engine.py``) and prints, from the execution histories,
state transitions per example and per task node (target: at most 4), the cost per 1,000
runs at Standard pricing ($0.025 per 1,000 transitions) and a Lambda estimate. Then the
synth time of the CDK app and the cold import time of every ``functions/`` entry point in
a fresh interpreter, above its floor (``bench/cold_imports.py``; target: at most 400 ms for
functions that do not call models; it depends on the machine, so a miss is marked, not
fatal). Exits 1 when the synth fails or a task node costs more transitions than the target.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cold_imports import entry_points, print_figures  # noqa: E402
from loom.db import Database, apply_migrations  # noqa: E402
from loom.engine.service import start_run  # noqa: E402
from loom.runtime.aws.dispatcher import StepFunctionsDispatcher  # noqa: E402
from loom.runtime.aws.platform import current_platform  # noqa: E402
from loom.workflows.service import create_workflow  # noqa: E402
from tests.utils.aws_engine import NODE_FUNCTIONS, aws_engine, transitions  # noqa: E402
from tests.utils.engine import example  # noqa: E402
from tests.utils.pg import start_test_cluster  # noqa: E402

TRANSITION_PRICE = 0.025 / 1000
# Lambda on arm64: per GB-second and per request; each invocation is estimated at 1 GB for
# 150 ms (the advance and flow functions measure less, model calls more).
LAMBDA_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1_000_000
LAMBDA_SECONDS = 0.15
TRANSITIONS_TARGET = 4.0
# Every run enters "What next?" first, and ends with Advance, "What next?", "Run finished".
RUN_OVERHEAD = 4

EXAMPLES: dict[str, Any] = {
    "transform": {"customer": {"name": "Ada"}, "lines": [{"price": 2, "qty": 3}]},
    "parallel_merge": {"n": 4},
    "if_skip": {"amount": 10},
    "switch": {"channel": "chat"},
    "filter": {"orders": [{"total": 150}, {"total": 20}]},
    "loop": {"items": [1, 2, 3]},
    "demo": {"tickets": [{"id": 1, "title": "a", "priority": "high"}]},
    "wait": {"seconds": 1},
}


def transition_figures() -> bool:
    ok = True
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        cluster = start_test_cluster(Path(tmp) / "pg")
        apply_migrations(cluster.urls.owner)
        db = Database(cluster.urls, min_size=1, max_size=4).open()
        workspace = uuid.uuid4()
        with db.tenant(workspace) as conn:
            conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'bench')", (workspace,))
        node_functions = set(NODE_FUNCTIONS.values())
        print(f"{'example':<16}{'transitions':>12}{'task nodes':>12}{'per node':>10}"
              f"{'$/1000 runs SFN':>17}{'+ Lambda':>10}")  # fmt: skip
        with aws_engine(patch, cluster, Path(tmp) / "home") as aws:
            for name, input in EXAMPLES.items():
                before = sum(aws.lambdas.calls[f] for f in node_functions)
                invocations_before = sum(aws.lambdas.calls.values())
                workflow_id = create_workflow(db, workspace, example(name)).workflow_id
                run_id = start_run(db, workspace, workflow_id, input).run_id
                platform = current_platform()
                StepFunctionsDispatcher(platform.engine, platform.settings).submit(
                    workspace, run_id
                )
                executions = aws.wait_for_run(run_id)
                count = sum(transitions(aws.history(e["executionArn"])) for e in executions)
                tasks = sum(aws.lambdas.calls[f] for f in node_functions) - before
                invocations = sum(aws.lambdas.calls.values()) - invocations_before
                per_node = (count - RUN_OVERHEAD) / tasks if tasks else float("nan")
                sfn_cost = count * TRANSITION_PRICE * 1000
                per_call = LAMBDA_SECONDS * LAMBDA_GB_SECOND + LAMBDA_REQUEST
                lambda_cost = invocations * per_call * 1000
                # A WAIT node is no task: its Map, Wait and wake-up count against the task.
                waits = sum(1 for n in example(name)["nodes"] if n["subtype"] == "WAIT")
                ok &= tasks == 0 or waits > 0 or per_node <= TRANSITIONS_TARGET
                print(f"{name:<16}{count:>12}{tasks:>12}{per_node:>10.2f}"
                      f"{sfn_cost:>17.4f}{lambda_cost:>10.4f}")  # fmt: skip
        db.close()
    print(f"per node: (transitions - {RUN_OVERHEAD} per run) / task nodes executed; "
          f"target {TRANSITIONS_TARGET:g}")  # fmt: skip
    return ok


def synth_figure() -> bool:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        env = {
            "CDK_OUTDIR": out,
            "CDK_CONTEXT_JSON": '{"loom:skipBundling": true}',
            "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        result = subprocess.run(
            [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, timeout=900
        )
    print(f"cdk synth (6 stacks, bundling skipped): {time.perf_counter() - started:.1f} s")
    return result.returncode == 0


def cold_import_figures() -> None:
    """Every functions/ entry point: cold import, above its floor, litellm (see
    bench/cold_imports.py)."""
    print_figures(entry_points())


def main() -> int:
    results = [transition_figures(), synth_figure()]
    cold_import_figures()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
