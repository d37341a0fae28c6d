"""Start-up figures: embedded Postgres first start (initdb) and warm start, migrations,
and `loom up` to healthy. Prints one line per figure; run with `make bench` or directly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loom.db import apply_migrations  # noqa: E402
from loom.db.urls import embedded_urls  # noqa: E402
from tests.utils.procs import LOOM, cli_env, free_port  # noqa: E402


def _timed(label: str, fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    elapsed = time.perf_counter() - started
    print(f"{label:<42} {elapsed * 1000:8.0f} ms")
    return elapsed


def _start_in_subprocess(pgdata: Path) -> None:
    """Start and stop in a child, so each start is a real process start (as `loom` does)."""
    code = "import sys; from pathlib import Path; from loom.db.embedded import start_embedded; "
    code += "start_embedded(Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(pgdata)], check=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / ".loom"
        home.mkdir()
        pgdata = home / "pg"
        _timed("embedded Postgres first start (initdb)", lambda: _start_in_subprocess(pgdata))
        _timed("embedded Postgres warm start (+stop)", lambda: _start_in_subprocess(pgdata))

        from loom.db.embedded import start_embedded

        urls = embedded_urls(start_embedded(pgdata))
        _timed("migrations, fresh database", lambda: apply_migrations(urls.owner))
        _timed("migrations, up to date", lambda: apply_migrations(urls.owner))

        port = free_port()
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*LOOM, "up", "--port", str(port)],
            env=cli_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/v1/public/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.02)
            print(
                f"{'`loom up` to healthy (warm data dir)':<42} "
                f"{(time.perf_counter() - started) * 1000:8.0f} ms"
            )
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
