"""API figures on loopback: p50, p99 and requests/s with 50 concurrent clients for 20 s each
on GET /v1/runs/{id}, POST /v1/workflows/{id}/runs, and a bare FastAPI hello endpoint in
the same run (separate server processes; the load comes from a third). Targets: starting
runs at >= 40% of the hello throughput, p99 <= 50 ms. Under each Loom route, the CPU each
request cost the API process, the engine process (which runs the started runs) and
Postgres: on one small machine they share the cores, so these say where a request's time
goes. Then the cold import time of every functions/api module, above a bare `import
fastapi`, and whether any imports litellm.

usage: python bench/api.py [--seconds 20] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cold_imports import entry_points, print_figures  # noqa: E402
from tests.utils.procs import free_port  # noqa: E402

HELLO_APP = """
from fastapi import FastAPI
app = FastAPI()
@app.get("/hello")
def hello() -> dict[str, str]:
    return {"hello": "world"}
"""


def _server(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(url: str, timeout: float = 120) -> None:
    """Until ``url`` answers (and, for Loom's health, its engine process is ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).json().get("engine") in (None, "ok"):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def _load(
    method: str, url: str, *, headers: dict[str, str], body: Any, clients: int, seconds: float
) -> tuple[list[float], int, int]:
    """``clients`` keep-alive HTTP/1.1 connections on raw asyncio streams: far cheaper per
    request than an HTTP client library, so the generator is not what gets measured."""
    parsed = httpx.URL(url)
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {parsed.raw_path.decode()} HTTP/1.1", f"Host: {parsed.host}:{parsed.port}",
             "Connection: keep-alive", f"Content-Length: {len(payload)}",
             *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    if body is not None:
        lines.append("Content-Type: application/json")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))  # fmt: skip
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                errors += status >= 400
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, errors, len(latencies)


class CpuMeter:
    """CPU seconds of the Loom processes by part: the API (``loom up`` itself), the engine
    (its child processes) and Postgres (the embedded server under ``pgdata`` and its
    backends). Reaped processes count through their parents' children times."""

    def __init__(self, loom: int, pgdata: str) -> None:
        self.loom = psutil.Process(loom)
        self.pgdata = pgdata

    def read(self) -> dict[str, float]:
        postmasters = [
            p
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and self.pgdata in " ".join(p.info["cmdline"] or [])
        ]
        return {
            "API": _seconds([self.loom], children=False),
            "engine": _seconds(self.loom.children(recursive=True), children=True),
            "Postgres": _seconds(
                [*postmasters, *(c for p in postmasters for c in p.children(recursive=True))],
                children=True,
            ),
        }


def _seconds(processes: list[psutil.Process], *, children: bool) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
        if children:
            total += times.children_user + times.children_system
    return total


def _measured(meter: CpuMeter, load: Any) -> tuple[tuple[list[float], int, int], dict[str, float]]:
    """``load``'s result, and the CPU each part spent during it."""
    before = meter.read()
    result = asyncio.run(load)
    after = meter.read()
    return result, {part: after[part] - before[part] for part in after}


def _report_cpu(spent: dict[str, float], requests: int) -> None:
    parts = ", ".join(f"{part} {seconds / requests * 1000:.2f}" for part, seconds in spent.items())
    print(f"{'':<34}CPU ms per request: {parts}")


def _report(label: str, result: tuple[list[float], int, int], seconds: float) -> float:
    latencies, errors, count = result
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    rps = count / seconds
    print(f"{label:<34}{rps:>8.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   errors {errors}")
    return rps


def _import_times() -> None:
    """Cold import of every functions/api module: absolute, above a bare `import fastapi`,
    and whether litellm came with it (see bench/cold_imports.py)."""
    print_figures(entry_points("api"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "LOOM_HOME": f"{tmp}/.loom",
            "LOOM_LOG_LEVEL": "WARNING",
            "LOOM_RATE_LIMIT_PER_MINUTE": "10000000",
            "LOOM_IP_RATE_LIMIT_PER_MINUTE": "10000000",
            "LOOM_PUBLIC_RATE_LIMIT_PER_MINUTE": "10000000",
        }
        env.pop("DATABASE_URL", None)
        loom_port, hello_port = free_port(), free_port()
        (Path(tmp) / "hello_app.py").write_text(HELLO_APP)
        loom = _server([sys.executable, "-m", "loom.cli", "up", "--port", str(loom_port)], env)
        hello = _server(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "hello_app:app",
                "--port",
                str(hello_port),
                "--log-level",
                "warning",
                "--app-dir",
                tmp,
            ],
            env,
        )
        try:
            base = f"http://127.0.0.1:{loom_port}"
            _wait(f"{base}/v1/public/health")
            _wait(f"http://127.0.0.1:{hello_port}/hello")
            session = httpx.post(
                f"{base}/v1/auth/signup",
                json={
                    "email": "bench@example.com",
                    "password": "correct horse battery",
                    "workspace_name": "bench",
                },
            ).json()
            headers = {"Authorization": f"Bearer {session['access_token']}"}
            definition = json.loads((ROOT / "examples" / "transform.json").read_text())
            flow = httpx.post(
                f"{base}/v1/workflows",
                headers=headers,
                json={"name": "bench", "definition": definition},
            ).json()["id"]
            run_input = {"customer": {"name": "ada"}, "lines": [{"price": 2, "qty": 3}]}
            run_id = httpx.post(
                f"{base}/v1/workflows/{flow}/runs", headers=headers, json={"input": run_input}
            ).json()["run_id"]
            print(f"{args.clients} clients, {args.seconds:g} s each, cores: {os.cpu_count()}")
            load = {"clients": args.clients, "seconds": args.seconds}
            hello_rps = _report(
                "GET /hello (bare FastAPI)",
                asyncio.run(
                    _load(
                        "GET", f"http://127.0.0.1:{hello_port}/hello", headers={}, body=None, **load
                    )
                ),
                args.seconds,
            )
            meter = CpuMeter(loom.pid, f"{tmp}/.loom")
            result, spent = _measured(
                meter, _load("GET", f"{base}/v1/runs/{run_id}", headers=headers, body=None, **load)
            )
            _report("GET /v1/runs/{id}", result, args.seconds)
            _report_cpu(spent, result[2])
            result, spent = _measured(
                meter,
                _load(
                    "POST",
                    f"{base}/v1/workflows/{flow}/runs",
                    headers=headers,
                    body={"input": run_input},
                    **load,
                ),
            )
            start_rps = _report("POST /v1/workflows/{id}/runs", result, args.seconds)
            _report_cpu(spent, result[2])
            print(f"start-run throughput / bare hello: {start_rps / hello_rps:.0%} (target >= 40%)")
        finally:
            for proc in (loom, hello):
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
    _import_times()


if __name__ == "__main__":
    main()
