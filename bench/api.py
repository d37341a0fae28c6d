"""API figures on loopback: p50, p99 and requests/s with 50 concurrent clients for 20 s each
on GET /v1/runs/{id}, POST /v1/workflows/{id}/runs, and a bare FastAPI hello endpoint in
the same run (separate server processes; the load comes from a third). Targets: starting
runs at >= 40% of the hello throughput, p99 <= 50 ms. Then the cold import time of every
functions/api module, above a bare `import fastapi`, and whether any imports litellm.

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
            _report(
                "GET /v1/runs/{id}",
                asyncio.run(
                    _load("GET", f"{base}/v1/runs/{run_id}", headers=headers, body=None, **load)
                ),
                args.seconds,
            )
            start_rps = _report(
                "POST /v1/workflows/{id}/runs",
                asyncio.run(
                    _load(
                        "POST",
                        f"{base}/v1/workflows/{flow}/runs",
                        headers=headers,
                        body={"input": run_input},
                        **load,
                    )
                ),
                args.seconds,
            )
            print(f"start-run throughput / bare hello: {start_rps / hello_rps:.0%} (target >= 40%)")
        finally:
            for proc in (loom, hello):
                proc.send_signal(signal.SIGINT)
                proc.wait(60)
    _import_times()


if __name__ == "__main__":
    main()
