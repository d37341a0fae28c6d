"""The ``loom`` command as a user meets it: up, health, Ctrl-C, and the ways it goes wrong."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from tests.utils.pg import PgCluster
from tests.utils.procs import LOOM, cli_env, free_port, run_cli, wait_healthy


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _spawned_children(pid: int) -> list[int]:
    """Child processes started by multiprocessing's spawn (the engine process)."""
    found = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in found if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _wait_until_engine_ok(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(url, timeout=5).json()["engine"] != "ok":
        assert time.monotonic() < deadline, "the engine process did not become ready"
        time.sleep(0.1)


def _loom_up(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LOOM, "up", "--port", str(port)],
        env=cli_env(tmp_path / ".loom"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_up_serves_health_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = _loom_up(tmp_path, port)
    engines: list[int] = []
    try:
        response = wait_healthy(f"http://127.0.0.1:{port}/v1/public/health", proc)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["database"] == "ok"
        assert body["version"]
        assert body["engine"] in ("starting", "ok")
        _wait_until_engine_ok(f"http://127.0.0.1:{port}/v1/public/health")
        engines = _spawned_children(proc.pid)
        assert len(engines) == 1, "the engine runs in a process of its own"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not any(Path(f"/proc/{pid}").exists() for pid in engines), "engine process left"
    assert f"http://127.0.0.1:{port}" in out
    assert "Loom stopped." in out
    assert (tmp_path / ".loom" / "pg" / "PG_VERSION").exists(), "data kept for the next run"


def test_up_on_a_port_in_use_names_the_port_and_the_option(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("up", "--port", str(port), env=cli_env(tmp_path / ".loom"))
    _assert_one_line_error(result, f"Port {port}", "--port")


def test_unreachable_database_url_is_one_line_without_secrets(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://loom:hunter2secret@127.0.0.1:{port}/loom"
    result = run_cli("db", "migrate", env=cli_env(tmp_path, DATABASE_URL=url))
    _assert_one_line_error(result, f"127.0.0.1:{port}", "DATABASE_URL")
    assert "hunter2secret" not in result.stderr + result.stdout


def test_damaged_data_directory_points_to_reset(tmp_path: Path) -> None:
    pgdata = tmp_path / ".loom" / "pg"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("garbage\n")
    result = run_cli("db", "migrate", env=cli_env(tmp_path / ".loom"))
    _assert_one_line_error(result, str(pgdata), "loom db reset")


def test_data_directory_that_fails_to_start_points_to_reset(tmp_path: Path) -> None:
    env = cli_env(tmp_path / ".loom")
    assert run_cli("db", "migrate", env=env).returncode == 0
    control = tmp_path / ".loom" / "pg" / "global" / "pg_control"
    control.write_bytes(b"\0" * 16)
    result = run_cli("db", "migrate", env=env)
    _assert_one_line_error(result, "did not start", "loom db reset")


def test_reset_asks_first_and_then_deletes(tmp_path: Path) -> None:
    env = cli_env(tmp_path / ".loom")
    assert run_cli("db", "migrate", env=env).returncode == 0
    pgdata = tmp_path / ".loom" / "pg"
    declined = run_cli("db", "reset", env=env, stdin="n\n")
    assert declined.returncode == 1 and "Nothing deleted" in declined.stdout
    assert (pgdata / "PG_VERSION").exists()
    accepted = run_cli("db", "reset", env=env, stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert not pgdata.exists()
    again = run_cli("db", "migrate", env=env)
    assert again.returncode == 0 and "0001" in again.stdout


def test_db_url_and_migrate_against_database_url(cluster: PgCluster, tmp_path: Path) -> None:
    owner = cluster.as_url(cluster.create_database("cli_target"))
    env = cli_env(tmp_path, DATABASE_URL=owner)
    migrated = run_cli("db", "migrate", env=env)
    assert migrated.returncode == 0 and "Applied" in migrated.stdout
    assert "up to date" in run_cli("db", "migrate", env=env).stdout
    assert (
        run_cli("db", "url", env=env)
        .stdout.strip()
        .endswith("/cli_target?host=" + str(cluster.socket_dir))
    )


def test_a_second_ctrl_c_stops_at_once_and_quietly(tmp_path: Path) -> None:
    """A second Ctrl-C makes uvicorn exit without waiting (for open streams, say): the
    lifespan is torn down rather than shut down, and that must not print a traceback."""
    port = free_port()
    proc = _loom_up(tmp_path, port)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/v1/public/health", proc)
        _wait_until_engine_ok(f"http://127.0.0.1:{port}/v1/public/health")
        engines = _spawned_children(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err, err
    assert "Loom stopped." in out
    assert not any(Path(f"/proc/{pid}").exists() for pid in engines), "engine process left"
