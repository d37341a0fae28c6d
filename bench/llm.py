"""LLM gateway figures.

Overhead: ``LlmGateway.complete`` (key lookup, breaker, budget read, two rate-limit buckets
in Postgres, the call, the usage row and the month's spend) against a raw
``litellm.acompletion`` to the same scripted OpenAI-compatible server on loopback (in its
own process), sequentially, in alternating blocks. Prints the median ms per call each way
and the difference (target <= 5 ms), also with a monthly budget set (the cost estimate per
call), and the median of the gateway's database work alone.

Cold imports: every ``functions/**`` entry point in a fresh interpreter, with whether it
imported litellm; none may (the gateway imports it on its first call). Exits 1 if one does.

Each figure is a section in ``SECTIONS``; more (the local model's) go there too.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from psycopg.types.json import Jsonb  # noqa: E402

from loom.config import Settings  # noqa: E402
from loom.db import Database, apply_migrations  # noqa: E402
from loom.db.llm import UsageRow  # noqa: E402
from loom.llm._litellm import litellm  # noqa: E402
from loom.llm.admission import Admission  # noqa: E402
from loom.llm.calls import CallContext  # noqa: E402
from loom.llm.gateway import LlmGateway  # noqa: E402
from loom.llm.targets import Target  # noqa: E402
from loom.llm.usage import record_usage  # noqa: E402
from tests.utils.fake_llm import fake_llm_process  # noqa: E402
from tests.utils.pg import start_test_cluster  # noqa: E402

CALLS = 300
BLOCK = 25
WARMUP = 20
OVERHEAD_TARGET_MS = 5.0
MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Classify this ticket: the printer is on fire."}]


async def _race(
    raw: Callable[[], Awaitable[None]], gateway: Callable[[], Awaitable[None]]
) -> tuple[float, float]:
    """Median ms per call for each, in alternating blocks, so that a busy machine's bursts
    fall on both alike."""
    for _ in range(WARMUP):
        await raw()
        await gateway()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(CALLS // BLOCK):
        for send, times in ((raw, samples[0]), (gateway, samples[1])):
            for _ in range(BLOCK):
                started = time.perf_counter()
                await send()
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[0]), statistics.median(samples[1])


def _bookkeeping_ms(db: Database, settings: Settings, workspace: uuid.UUID) -> float:
    """Median ms of the gateway's database work for one call, alone: the admission round
    trip (buckets, spend) and the usage round trip."""
    admission = Admission(db, settings)
    call = CallContext(workspace_id=workspace)
    target = Target(MODEL, "openai", MODEL, "sk-bench", None, "the bench key", None)
    row = UsageRow(MODEL, "openai", "ok", 20, 2, 0.0000042, 10)
    times = []
    for _ in range(CALLS):
        started = time.perf_counter()
        admission.admit(call, target, lambda: 0.0)
        record_usage(db, call, [row])
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _workspace(db: Database, budget: dict[str, Any] | None = None) -> uuid.UUID:
    workspace = uuid.uuid4()
    with db.tenant(workspace) as conn:
        conn.execute("INSERT INTO workspaces (id, name) VALUES (%s, 'bench')", (workspace,))
        if budget is not None:
            conn.execute(
                "UPDATE workspaces SET settings = jsonb_set(settings, '{llm_budget}', %s)",
                (Jsonb(budget),),
            )
    return workspace


async def _overhead(db: Database, api_base: str) -> None:
    settings = Settings.model_validate(
        {
            "llm_api_keys": {"openai": "sk-bench"},
            "llm_api_bases": {"openai": api_base},
            "llm_workspace_calls_per_minute": 10_000_000,
            "llm_provider_calls_per_minute": 10_000_000,
        }
    )
    gateway = LlmGateway(db, settings=settings)
    lib = litellm()

    async def raw() -> None:
        response = await lib.acompletion(
            model=MODEL,
            messages=MESSAGES,
            api_key="sk-bench",
            api_base=api_base,
            timeout=30,
            num_retries=0,
            max_retries=0,
        )
        assert response.choices[0].message.content == "urgent"

    def through(call: CallContext) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            answer = await gateway.complete(call, model=MODEL, messages=MESSAGES, max_tokens=5)
            assert answer.text == "urgent"

        return send

    plain = CallContext(workspace_id=_workspace(db))
    budgeted = CallContext(workspace_id=_workspace(db, {"monthly_usd": 1000}))
    print(f"Gateway overhead: {CALLS} sequential calls each way to a fake provider on loopback")
    for label, call in (("no budget", plain), ("monthly budget set", budgeted)):
        raw_ms, gateway_ms = await _race(raw, through(call))
        extra = gateway_ms - raw_ms
        verdict = "ok" if extra <= OVERHEAD_TARGET_MS else "OVER TARGET"
        print(f"  {label}:")
        print(f"    raw litellm.acompletion   {raw_ms:7.2f} ms/call (median)")
        print(f"    LlmGateway.complete       {gateway_ms:7.2f} ms/call (median)")
        print(f"    overhead {extra:+.2f} ms (target <= {OVERHEAD_TARGET_MS:g} ms): {verdict}")
    bookkeeping = await asyncio.to_thread(_bookkeeping_ms, db, settings, plain.workspace_id)
    print(f"  of which the database work alone (2 pipelined round trips): {bookkeeping:.2f} ms")
    print(f"  load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs while measuring")


def gateway_figures() -> bool:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fake_llm_process("urgent", tokens_in=20, tokens_out=2) as api_base,
    ):
        cluster = start_test_cluster(Path(tmp) / "pg")
        apply_migrations(cluster.urls.owner)
        with Database(cluster.urls, min_size=2, max_size=4) as db:
            asyncio.run(_overhead(db, api_base))
    return True


def cold_import_figures() -> bool:
    """Every function entry point imported in a fresh interpreter; False if any imported
    litellm."""
    entry_points = sorted(
        path
        for path in (ROOT / "functions").rglob("*.py")
        if path.name != "__init__.py" and "__pycache__" not in path.parts
    )
    baseline = _import_seconds("import fastapi")
    print(f"\nCold imports ({len(entry_points)} entry points; bare `import fastapi`: ", end="")
    print(f"{baseline:.2f} s)")
    clean = True
    for path in entry_points:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        code = f"import {module}, sys; print('litellm' in sys.modules)"
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        elapsed = time.perf_counter() - started
        imported = out == "True"
        clean = clean and not imported
        flag = "IMPORTS LITELLM" if imported else "no litellm"
        print(f"  {module:<40}{elapsed:6.2f} s   {flag}")
    return clean


def _import_seconds(code: str) -> float:
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def local_model_figures() -> bool:
    """The offline models' load time, time to first token, tokens/s and embeddings/s."""
    from bench import local_model

    local_model.chat_figures()
    local_model.embedding_figures()
    return True


SECTIONS: list[Callable[[], bool]] = [gateway_figures, local_model_figures, cold_import_figures]


def main() -> int:
    results = [section() for section in SECTIONS]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
