"""The local code sandbox against a corpus of escape and exhaustion attempts.

Every attempt must fail closed, with a clear error, while the runner goes on: a normal
execution works after all of them, no process outlives its call and no directory stays.
Codes reach ``os`` and ``sys`` through attributes of allowed modules (``random._os``,
``dataclasses.sys``) on purpose: the import allow-list is not the boundary.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import json
import os
import pwd
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from loom.sandbox import (
    CodeCrashed,
    CodeError,
    CodeFailed,
    CodeInvalid,
    CodeInvalidResult,
    CodeMemoryExceeded,
    CodeOutputTooLarge,
    CodeResult,
    CodeTimeout,
    Limits,
    LocalProcessRunner,
    SandboxUnavailable,
)
from loom.sandbox.local import BOOTSTRAP

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

RUNNER = LocalProcessRunner()
AS_ROOT = os.geteuid() == 0
E = TypeVar("E", bound=CodeError)


def run(code: str, inputs: Any = None, **limits: Any) -> CodeResult:
    return asyncio.run(RUNNER.run(textwrap.dedent(code), inputs, Limits(**limits)))


def fails(code: str, error: type[E], inputs: Any = None, **limits: Any) -> E:
    with pytest.raises(error) as caught:
        run(code, inputs, **limits)
    return caught.value


def sandbox_processes() -> list[int]:
    """Live processes running the bootstrap (any left over would be a leak)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(BOOTSTRAP).encode() in cmdline:
                found.append(int(entry.name))
    return found


@pytest.fixture
def tcp_server() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


# --- what the code can see ---------------------------------------------------------------


def test_the_environment_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://canary-in-os-environ")
    result = run(
        """
        import random
        def main(inputs):
            return dict(random._os.environ)
        """
    )
    assert result.value == {}


def test_secrets_in_the_parent_environment_never_reach_the_code(tmp_path: Path) -> None:
    """A Loom process started with secrets in its environment, as `loom up` would be."""
    canary = f"canary-{uuid.uuid4().hex}"
    code = textwrap.dedent(
        """
        import random
        def main(inputs):
            os = random._os
            found = {"os.environ": dict(os.environ)}
            parent = os.getppid()
            for path in ("/proc/self/environ", f"/proc/{parent}/environ",
                         f"/proc/{parent}/cmdline", "/proc/1/environ"):
                try:
                    with open(path, "rb") as f:
                        found[path] = f.read().decode("latin-1")
                except OSError as exc:
                    found[path] = type(exc).__name__
            return found
        """
    )
    script = (
        "import asyncio, json, sys\n"
        "from loom.sandbox import Limits, LocalProcessRunner\n"
        "result = asyncio.run(LocalProcessRunner().run(sys.stdin.read(), None, Limits()))\n"
        "print(json.dumps(result.value))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": f"postgresql://loom:{canary}@127.0.0.1/loom",
        "LOOM_JWT_SECRET": canary,
        "LOOM_HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", script, canary],
        input=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert canary not in done.stdout
    found = json.loads(done.stdout)
    assert found.pop("os.environ") == {}
    assert set(found.values()) == {"PermissionError"}, found


@pytest.mark.skipif(not AS_ROOT, reason="privileges are dropped only when Loom runs as root")
def test_the_code_runs_as_nobody_without_groups() -> None:
    result = run(
        """
        import random
        def main(inputs):
            os = random._os
            return [os.getresuid(), os.getresgid(), os.getgroups()]
        """
    )
    nobody = pwd.getpwnam("nobody")
    assert result.value == [[nobody.pw_uid] * 3, [nobody.pw_gid] * 3, []]


def test_the_master_key_cannot_be_read(tmp_path: Path) -> None:
    home = tmp_path / "loom-home"
    home.mkdir(mode=0o700)
    key = home / "master.key"
    canary = f"canary-{uuid.uuid4().hex}"
    key.write_text(canary)
    key.chmod(0o600)
    result = run(
        """
        import random
        def main(inputs):
            found = []
            dotted = inputs["home"] + "/./master.key"
            for attempt in (lambda: open(inputs["key"]).read(),
                            lambda: random._os.listdir(inputs["home"]),
                            lambda: open(dotted).read()):
                try:
                    found.append(attempt())
                except OSError as exc:
                    found.append(type(exc).__name__)
            return found
        """,
        {"key": str(key), "home": str(home)},
    )
    assert result.value == ["PermissionError"] * 3
    assert canary not in json.dumps(result.value)


def test_system_files_cannot_be_read() -> None:
    error = fails("def main(inputs):\n    return open('/etc/shadow').read()", CodeFailed)
    assert error.details["type"] == "PermissionError"


def test_files_outside_the_working_directory_cannot_be_written() -> None:
    target = Path(f"/tmp/loom-escape-{uuid.uuid4().hex}")
    code = """
        def main(inputs):
            for path in (inputs, "../" + inputs.rsplit("/", 1)[1]):
                try:
                    open(path, "w").write("escaped")
                except PermissionError:
                    continue
                return "written"
            return "refused"
        """
    assert run(code, str(target)).value == "refused"
    assert not target.exists()


# --- what the code can do ----------------------------------------------------------------


def test_no_connection_reaches_a_server_on_loopback(tcp_server: socket.socket) -> None:
    port = tcp_server.getsockname()[1]
    result = run(
        """
        import dataclasses
        def main(port):
            sys, importlib = dataclasses.sys, dataclasses.inspect.importlib
            attempts = {
                "import socket": lambda: __import__("socket"),
                "poisoned _socket": lambda: sys.modules["_socket"].socket(),
                "importlib": lambda: importlib.import_module("socket"),
                "import asyncio": lambda: importlib.import_module("asyncio"),
                "urllib.request": lambda: importlib.import_module("urllib.request").urlopen(
                    f"http://127.0.0.1:{port}/", timeout=1),
            }
            outcome = {}
            for name, attempt in attempts.items():
                try:
                    attempt()
                    outcome[name] = "connected"
                except BaseException as exc:
                    outcome[name] = type(exc).__name__
            return outcome
        """,
        port,
    )
    assert "connected" not in result.value.values(), result.value
    with pytest.raises(BlockingIOError):
        tcp_server.accept()


def test_a_fork_bomb_creates_no_process() -> None:
    result = run(
        """
        import dataclasses, random
        def main(inputs):
            sys = dataclasses.sys
            attempts = {
                "os.fork": lambda: random._os.fork(),
                "posix.fork": lambda: sys.modules["posix"].fork(),
                "thread": lambda: sys.modules["_thread"].start_new_thread(main, (None,)),
            }
            outcome = {}
            for name, attempt in attempts.items():
                try:
                    while True:
                        attempt()
                except BaseException as exc:
                    outcome[name] = type(exc).__name__
            return outcome
        """
    )
    assert result.value == {
        "os.fork": "AttributeError",
        "posix.fork": "AttributeError",
        "thread": "RuntimeError",  # RLIMIT_NPROC is 0: no new task at all
    }
    assert sandbox_processes() == []


def test_shell_commands_cannot_be_run() -> None:
    result = run(
        """
        import dataclasses, random
        def main(inputs):
            posix = dataclasses.sys.modules["posix"]
            outcome = []
            for name in ("system", "popen", "execv", "posix_spawn", "spawnv", "kill"):
                outcome.append(hasattr(random._os, name) or hasattr(posix, name))
            return outcome
        """
    )
    assert result.value == [False] * 6
    error = fails("import random\ndef main(inputs):\n    random._os.system('id')", CodeFailed)
    assert error.details["type"] == "AttributeError"


def test_subprocess_cannot_be_imported() -> None:
    error = fails("import subprocess\ndef main(inputs):\n    return 1", CodeFailed)
    assert error.details["type"] == "ImportError"
    assert "cannot import 'subprocess'" in error.message


def test_an_endless_loop_is_stopped_at_the_timeout() -> None:
    started = time.monotonic()
    error = fails(
        "def main(inputs):\n    while True:\n        pass", CodeTimeout, timeout_seconds=1
    )
    assert time.monotonic() - started < 3
    assert "within 1 s" in error.message


def test_a_cpu_burn_is_stopped_at_the_cpu_limit() -> None:
    started = time.monotonic()
    code = "def main(inputs):\n    n = 0\n    while True:\n        n += 1"
    error = fails(code, CodeTimeout, timeout_seconds=20, cpu_seconds=1)
    assert "1 s of CPU time" in error.message
    assert time.monotonic() - started < 10


def test_an_8_gb_allocation_hits_the_memory_limit() -> None:
    error = fails("def main(inputs):\n    return len(bytearray(8 * 1024**3))", CodeMemoryExceeded)
    assert "256 MB" in error.message
    growing = "def main(inputs):\n    x = []\n    while True:\n        x.append(bytearray(10**6))"
    fails(growing, CodeMemoryExceeded)


def test_a_huge_result_is_refused() -> None:
    error = fails("def main(inputs):\n    return 'x' * (2 * 1024 * 1024)", CodeOutputTooLarge)
    assert "limit is 1048576" in error.message


def test_a_flood_on_the_result_channel_is_cut_off() -> None:
    code = """
        import random
        def main(inputs):
            while True:
                random._os.write(3, b"x" * 65536)
        """
    started = time.monotonic()
    error = fails(code, CodeOutputTooLarge)
    assert "more than 1048576 bytes" in error.message
    assert time.monotonic() - started < 5


def test_huge_logs_are_truncated_and_a_flood_is_stopped() -> None:
    result = run("def main(inputs):\n    print('y' * 1_000_000)\n    return 1")
    assert result.value == 1
    assert result.logs.startswith("y" * 1000)
    assert "more bytes of output not kept" in result.logs
    assert len(result.logs) < 70_000
    flood = """
        import random
        def main(inputs):
            while True:
                random._os.write(2, b"z" * 65536)
        """
    error = fails(flood, CodeOutputTooLarge)
    assert "printed more than" in error.message


def test_a_100_mb_file_stops_at_the_file_size_limit() -> None:
    result = run(
        """
        import random
        def main(inputs):
            chunk = b"x" * (1024 * 1024)
            try:
                with open("big.bin", "wb") as f:
                    for _ in range(100):
                        f.write(chunk)
            except OSError as exc:
                return [exc.errno, random._os.path.getsize("big.bin")]
            return "written"
        """
    )
    assert result.value[0] == errno.EFBIG
    assert result.value[1] <= 1024 * 1024


def test_ctypes_cannot_be_imported() -> None:
    for code in ("import ctypes", "__import__('ctypes')", "from ctypes import CDLL"):
        error = fails(f"def main(inputs):\n    {code}", CodeFailed)
        assert error.details["type"] == "ImportError", code


def test_importlib_tricks_load_nothing() -> None:
    spec = importlib.util.find_spec("_ctypes")
    assert spec is not None and spec.origin is not None
    ctypes_so = spec.origin
    result = run(
        """
        import dataclasses, json
        def main(so):
            importlib = dataclasses.inspect.importlib
            machinery = importlib.machinery
            def native():
                loader = machinery.ExtensionFileLoader("_ctypes", so)
                return loader.create_module(machinery.ModuleSpec("_ctypes", loader, origin=so))
            attempts = {
                "import_module": lambda: importlib.import_module("ctypes"),
                "real __import__": lambda: json.__builtins__["__import__"]("sqlite3"),
                "native loader": native,
                "reload": lambda: importlib.reload(json),
                "faulthandler": lambda: __import__("faulthandler"),
            }
            outcome = {}
            for name, attempt in attempts.items():
                try:
                    attempt()
                    outcome[name] = "loaded"
                except BaseException as exc:
                    outcome[name] = type(exc).__name__
            return outcome
        """,
        ctypes_so,
    )
    assert result.value == {
        "import_module": "ModuleNotFoundError",  # poisoned in sys.modules
        "real __import__": "ImportError",  # the audit hook refuses any new import
        "native loader": "AttributeError",  # _imp.create_dynamic is gone
        "reload": "ImportError",  # no finder is left
        "faulthandler": "ImportError",
    }


def test_sys_modules_tricks_load_nothing() -> None:
    error = fails(
        """
        import dataclasses, json
        def main(stdlib):
            sys, machinery = dataclasses.sys, dataclasses.inspect.importlib.machinery
            del sys.modules["ctypes"]
            sys.meta_path.insert(0, machinery.PathFinder)
            sys.path.append(stdlib)
            sys.path_hooks.append(machinery.FileFinder.path_hook(
                (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES)))
            sys.path_importer_cache.clear()
            return json.__builtins__["__import__"]("ctypes")
        """,
        CodeFailed,
        sysconfig.get_paths()["stdlib"],
    )
    assert error.details["type"] == "ImportError"
    assert "'ctypes' is not available" in error.message


def test_crafted_bytecode_and_limit_changes_are_refused() -> None:
    result = run(
        """
        import dataclasses
        def main(inputs):
            sys = dataclasses.sys
            marshal = dataclasses.inspect.importlib._bootstrap_external.marshal
            resource = sys.modules["resource"]
            attempts = {
                "code.replace": lambda: (lambda: 0).__code__.replace(co_code=b"\\x00" * 8),
                "marshal": lambda: marshal.loads(marshal.dumps(1)),
                "setrlimit": lambda: resource.setrlimit(resource.RLIMIT_CPU, (999, 999)),
                "prlimit": lambda: resource.prlimit(1, resource.RLIMIT_CPU),
                "gc walk": lambda: sys.modules["gc"].get_objects() if "gc" in sys.modules
                                   else (_ for _ in ()).throw(PermissionError),
            }
            outcome = {}
            for name, attempt in attempts.items():
                try:
                    attempt()
                    outcome[name] = "done"
                except BaseException as exc:
                    outcome[name] = type(exc).__name__
            return outcome
        """
    )
    assert set(result.value.values()) == {"PermissionError"}, result.value


def test_the_parent_cannot_be_signalled() -> None:
    code = "import random\ndef main(pid):\n    random._os.kill(pid, 9)"
    error = fails(code, CodeFailed, os.getpid())
    assert error.details["type"] == "AttributeError"


def test_a_segfault_is_reported_as_a_crash() -> None:
    code = """
        import dataclasses
        def main(inputs):
            dataclasses.sys.setrecursionlimit(1_000_000)
            nested = []
            for _ in range(200_000):
                nested = [nested]
            return repr(nested)
        """
    error = fails(code, CodeCrashed)
    assert "SIGSEGV" in error.message


def test_closed_pipes_end_without_a_result() -> None:
    code = """
        import random
        def main(inputs):
            for fd in (3, 2, 1):
                random._os.close(fd)
            return 1
        """
    error = fails(code, CodeCrashed)
    assert "no result" in error.message


def test_garbage_on_the_result_channel_is_refused() -> None:
    code = """
        import random
        def main(inputs):
            random._os.write(3, b"\\x00garbage\\n")
            return 1
        """
    error = fails(code, CodeCrashed)
    assert "unreadable result" in error.message


# --- what the code gets back -------------------------------------------------------------


def test_a_non_json_result_is_refused() -> None:
    error = fails("def main(inputs):\n    return {1, 2}", CodeInvalidResult)
    assert "set is not JSON serializable" in error.message
    fails("def main(inputs):\n    return float('nan')", CodeInvalidResult)


def test_a_syntax_error_names_its_line() -> None:
    error = fails("def main(inputs):\n    return (", CodeInvalid)
    assert error.details["line"] == 2
    assert "line 2" in error.message


def test_code_without_main_is_invalid() -> None:
    fails("x = 1", CodeInvalid)


def test_a_user_exception_has_a_traceback_of_the_users_code_only() -> None:
    code = """\
def helper(record):
    return record["missing"]


def main(inputs):
    return helper(inputs)
"""
    error = fails(code, CodeFailed, {"present": 1})
    assert error.details["type"] == "KeyError"
    assert error.details["line"] == 2
    assert error.message == "main() raised KeyError (line 2): 'missing'"
    assert error.details["traceback"] == (
        "Traceback (most recent call last):\n"
        "  line 6, in main\n"
        "    return helper(inputs)\n"
        "  line 2, in helper\n"
        '    return record["missing"]'
    )
    assert "bootstrap" not in json.dumps(error.details)


def test_allowed_modules_work_and_prints_become_logs() -> None:
    code = """
        import statistics, datetime, re, zoneinfo
        from collections import Counter
        from urllib.parse import quote
        def main(inputs):
            print("summing", len(inputs))
            with open("scratch.txt", "w") as f:
                f.write("ok")
            when = datetime.datetime(2024, 6, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
            return {
                "mean": statistics.mean(inputs),
                "counts": Counter(re.findall("[a-z]", "abca")),
                "quoted": quote("a b"),
                "utc": when.astimezone(datetime.timezone.utc).isoformat(),
                "scratch": open("scratch.txt").read(),
            }
        """
    result = run(code, [1, 2, 3, 4])
    assert result.value == {
        "mean": 2.5,
        "counts": {"a": 2, "b": 1, "c": 1},
        "quoted": "a%20b",
        "utc": "2024-06-01T10:00:00+00:00",
        "scratch": "ok",
    }
    assert result.logs == "summing 4\n"


def test_non_json_inputs_are_refused_before_a_process_starts() -> None:
    from loom.errors import InvalidInput

    with pytest.raises(InvalidInput):
        run("def main(inputs):\n    return 1", {"when": object()})


def test_without_privilege_drop_a_warning_says_so(caplog: pytest.LogCaptureFixture) -> None:
    runner = LocalProcessRunner(user=f"loom-no-such-user-{uuid.uuid4().hex[:8]}")
    result = asyncio.run(runner.run("def main(inputs):\n    return 7", None, Limits()))
    assert result.value == 7
    assert "cannot drop privileges" in caplog.text


def test_a_sandbox_that_cannot_start_is_a_clear_retryable_error() -> None:
    runner = LocalProcessRunner(python="/nonexistent/python3")
    with pytest.raises(SandboxUnavailable) as caught:
        asyncio.run(runner.run("def main(inputs):\n    return 1", None, Limits()))
    assert caught.value.retryable
    assert "Could not start the code sandbox" in caught.value.message


# --- the runner goes on ------------------------------------------------------------------

HOSTILE = [
    "def main(inputs):\n    while True:\n        pass",
    "def main(inputs):\n    return bytearray(8 * 1024**3)",
    "def main(inputs):\n    return 'x' * (2 * 1024 * 1024)",
    "import random\ndef main(inputs):\n    random._os.close(3)\n    return 1",
    "import random\ndef main(inputs):\n    random._os.fork()",
    "import dataclasses\ndef main(inputs):\n    dataclasses.sys.setrecursionlimit(10**6)\n"
    "    n = []\n    for _ in range(200_000):\n        n = [n]\n    return repr(n)",
    "import random\ndef main(inputs):\n    while True:\n        random._os.write(2, b'z' * 65536)",
    "def main(inputs):\n    return object()",
    "def main(inputs):\n    raise SystemExit(3)",
]


def test_the_runner_survives_a_hostile_crowd_and_leaves_nothing_behind() -> None:
    async def crowd() -> list[BaseException | CodeResult]:
        gate = asyncio.Semaphore(3)

        async def one(code: str) -> CodeResult:
            async with gate:
                return await RUNNER.run(code, None, Limits(timeout_seconds=2))

        return await asyncio.gather(*(one(c) for c in HOSTILE), return_exceptions=True)

    outcomes = asyncio.run(crowd())
    assert all(isinstance(o, CodeError) for o in outcomes), outcomes
    result = run(
        "import random\ndef main(inputs):\n    return [inputs + 1, random._os.getcwd()]", 41
    )
    assert result.value[0] == 42
    workdir = Path(result.value[1])
    assert not workdir.exists() and not workdir.parent.exists()
    assert sandbox_processes() == []


def test_a_cancelled_call_kills_its_process() -> None:
    async def cancel_midway() -> None:
        task = asyncio.create_task(
            RUNNER.run("def main(inputs):\n    while True:\n        pass", None, Limits())
        )
        await asyncio.sleep(0.5)
        assert sandbox_processes() != []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert sandbox_processes() == []
