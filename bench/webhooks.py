"""Webhook figures on loopback: signed deliveries to one TRIGGER.WEBHOOK of a `loom up`
(its own process, embedded Postgres) at a fixed rate - 100 per second for 20 s - sent
open-loop from this process over raw keep-alive connections. Prints webhook-to-run-started
latency p50 and p99 - until the 202 carrying the run id, which Loom sends once the run is
committed and handed to the engine - then until the engine is running it (the run's
`started_at`, same clock), and events received (202) against runs the engine started.
Targets: p99 <= 50 ms; zero lost.

usage: python bench/webhooks.py [--rate 100] [--seconds 20] [--connections 16]
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
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loom import signing  # noqa: E402
from tests.utils.procs import free_port  # noqa: E402

WORKFLOW = {
    "name": "bench webhooks",
    "nodes": [
        {"id": "hook", "type": "TRIGGER", "subtype": "WEBHOOK"},
        {"id": "shape", "type": "ACTION", "subtype": "TRANSFORM",
         "parameters": {"value": {"order": "{% $input.body.order %}"}}},
    ],
    "edges": [{"from": "hook", "to": "shape"}],
}  # fmt: skip


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("loom up exited during start-up")
        try:
            if httpx.get(url, timeout=1).json().get("engine") == "ok":
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _request(url: httpx.URL, secret: bytes, index: int) -> bytes:
    body = json.dumps({"order": index}).encode()
    lines = [
        f"POST {url.raw_path.decode()} HTTP/1.1",
        f"Host: {url.host}:{url.port}",
        "Connection: keep-alive",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"X-Loom-Delivery: bench-{index}",
        f"{signing.HEADER}: {signing.sign(secret, body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _load(
    url: str, secret: bytes, *, rate: float, seconds: float, connections: int
) -> tuple[dict[int, float], list[float], dict[int, int]]:
    """Send request i at start + i / rate on connection i % connections (open loop: a slow
    reply delays only its own connection). Returns send times, reply latencies, statuses."""
    target = httpx.URL(url)
    total = int(rate * seconds)
    sent: dict[int, float] = {}
    replies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter() + 0.2

    async def connection(lane: int) -> None:
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            for index in range(lane, total, connections):
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                request = _request(target, secret, index)
                began = time.perf_counter()
                sent[index] = time.time()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))  # fmt: skip
                await reader.readexactly(length)
                replies.append(time.perf_counter() - began)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(lane) for lane in range(connections)))
    return sent, replies, statuses


def _runs(client: httpx.Client, headers: dict[str, str], workflow_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"workflow_id": workflow_id, "limit": 200}
        if before:
            params["before"] = before
        page = client.get("/v1/runs", params=params, headers=headers).json()
        found += page["items"]
        before = page["next_before"]
        if not before:
            return found


def _at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[max(int(len(ordered) * share) - 1, 0)]


def _line(label: str, values: list[float]) -> None:
    ordered = sorted(values)
    p50, p99 = statistics.median(ordered) * 1000, _percentile(ordered, 0.99) * 1000
    print(f"{label:<34} p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   max {ordered[-1] * 1000:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "LOOM_HOME": f"{tmp}/.loom",
            "LOOM_LOG_LEVEL": "WARNING",
            "LOOM_IP_RATE_LIMIT_PER_MINUTE": "10000000",
            "LOOM_PUBLIC_RATE_LIMIT_PER_MINUTE": "10000000",
            "LOOM_WEBHOOK_RATE_LIMIT_PER_MINUTE": "10000000",
        }
        env.pop("DATABASE_URL", None)
        port = free_port()
        loom = subprocess.Popen(
            [sys.executable, "-m", "loom.cli", "up", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(f"{base}/v1/public/health", loom)
            with httpx.Client(base_url=base, timeout=30) as client:
                session = client.post(
                    "/v1/auth/signup",
                    json={"email": "bench@example.com", "password": "correct horse battery",
                          "workspace_name": "bench"},
                ).json()  # fmt: skip
                headers = {"Authorization": f"Bearer {session['access_token']}"}
                workflow_id = client.post(
                    "/v1/workflows",
                    json={"name": WORKFLOW["name"], "definition": WORKFLOW},
                    headers=headers,
                ).json()["id"]
                deployed = client.post(f"/v1/workflows/{workflow_id}/deploy", headers=headers)
                [hook] = deployed.json()["triggers"]
                secret = hook["secret"].encode()
                print(
                    f"{args.rate:g} deliveries/s for {args.seconds:g} s over "
                    f"{args.connections} connections, cores: {os.cpu_count()}"
                )
                sent, replies, statuses = asyncio.run(
                    _load(
                        hook["url"],
                        secret,
                        rate=args.rate,
                        seconds=args.seconds,
                        connections=args.connections,
                    )
                )
                received = statuses.get(202, 0)
                deadline = time.monotonic() + 60
                runs = _runs(client, headers, workflow_id)
                while time.monotonic() < deadline and (
                    len(runs) < received or any(r["started_at"] is None for r in runs)
                ):
                    time.sleep(0.5)
                    runs = _runs(client, headers, workflow_id)
        finally:
            loom.send_signal(signal.SIGINT)
            loom.wait(60)
    started = {
        int(r["trigger"]["delivery_id"].removeprefix("bench-")): r
        for r in runs
        if r["started_at"] is not None
    }
    picked_up = [_at(run["started_at"]) - sent[i] for i, run in started.items()]
    _line("webhook -> run started (202)", replies)
    _line("webhook -> engine running it", picked_up)
    print(f"replies by status: {dict(sorted(statuses.items()))}")
    print(
        f"events received {received}, runs started {len(started)}, "
        f"lost {received - len(started)} (targets: p99 <= 50 ms, zero lost)"
    )


if __name__ == "__main__":
    main()
