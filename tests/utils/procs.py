"""Running the ``loom`` CLI as a real process, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

LOOM = [sys.executable, "-m", "loom.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_") and k != "DATABASE_URL"}
    env.update({"LOOM_HOME": str(home), "LOOM_LOG_LEVEL": "WARNING", **extra})
    return env


def run_cli(
    *args: str, env: dict[str, str], stdin: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LOOM, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"loom up exited early with {proc.returncode}")
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def start_up(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    """`loom up` on ``port`` as a real process, once its health answers."""
    proc = subprocess.Popen(
        [*LOOM, "up", "--port", str(port)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_healthy(f"http://127.0.0.1:{port}/v1/public/health", proc)
    return proc


def stop_up(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """Ctrl-C, as a person stops it; it must exit 0. Its stderr."""
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return err
