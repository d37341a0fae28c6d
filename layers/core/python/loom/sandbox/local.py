"""The local code runner: one fresh, limited, unprivileged process per execution.

The parent gives the child nothing it does not need: an empty environment, a new
temporary directory, no inherited descriptors, a session of its own (so the whole group
can be killed), the code and inputs on stdin. It reads one result line from stdout with a
cap, keeps a capped copy of stderr as logs, and kills the process group on the wall-clock
timeout, on an oversized answer, or when the call itself is cancelled. Whatever the child
does, ``run`` returns a ``CodeResult`` or raises one ``CodeError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import sys
import tempfile
import time
from asyncio.subprocess import PIPE, Process
from functools import cached_property
from pathlib import Path
from typing import Any

from loom.errors import InvalidInput, LoomError
from loom.sandbox.base import (
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
    SandboxUnavailable,
    syntax_error,
)

log = logging.getLogger(__name__)

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
SANDBOX_USER = "nobody"
# Past this much stdout+stderr noise the process is killed: draining it costs the parent.
MAX_LOG_STREAM_BYTES = 8 * 1024 * 1024
_ENVELOPE_BYTES = 64  # {"ok":true,"value":...} around the value
_CHUNK = 64 * 1024


class LocalProcessRunner:
    """Runs code in ``python -I -S -B bootstrap.py`` (see ``bootstrap`` for the child).

    As root, each execution drops to ``user`` (default ``nobody``), so file permissions
    keep it away from ``.loom/``, the master key and other processes. Otherwise the child
    keeps Loom's uid and only the process, its limits and the Python-level guards apply;
    this is logged once.
    """

    def __init__(self, *, user: str = SANDBOX_USER, python: str = sys.executable) -> None:
        self._user = user
        self._python = python

    @cached_property
    def _identity(self) -> tuple[int, int] | None:
        """The (uid, gid) to drop to, or None when that is impossible."""
        reason = None
        if os.geteuid() != 0:
            reason = "Loom is not running as root"
        else:
            try:
                entry = pwd.getpwnam(self._user)
            except KeyError:
                reason = f"there is no user {self._user!r}"
            else:
                return entry.pw_uid, entry.pw_gid
        log.warning(
            "code sandbox: cannot drop privileges (%s); Code nodes run as uid %d and file "
            "permissions do not separate them from Loom's files. The process, its limits and "
            "the Python-level guards still apply. For file isolation run the engine as root "
            "(each execution then becomes %r) or on AWS.",
            reason,
            os.geteuid(),
            self._user,
        )
        return None

    async def run(self, code: str, inputs: Any, limits: Limits) -> CodeResult:
        request = {"code": code, "inputs": inputs, "user": self._identity}
        try:
            payload = json.dumps(request, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"The inputs of the code are not JSON: {exc}.",
                solution="Pass only JSON values (objects, lists, strings, numbers, booleans).",
            ) from None
        top, workdir = _make_workdir(self._identity)
        try:
            return await self._execute(payload, workdir, limits)
        finally:
            shutil.rmtree(top, onerror=_log_leftover)

    async def _execute(self, payload: bytes, workdir: Path, limits: Limits) -> CodeResult:
        child_limits = {
            "cpu": limits.cpu,
            "memory": limits.memory_bytes,
            "fsize": limits.file_size_bytes,
            "nofile": limits.open_files,
            "max_output": limits.max_output_bytes,
        }
        started = time.perf_counter()
        try:
            process = await asyncio.create_subprocess_exec(
                self._python,
                "-I",
                "-S",
                "-B",
                str(BOOTSTRAP),
                json.dumps(child_limits),
                stdin=PIPE,
                stdout=PIPE,
                stderr=PIPE,
                env={},
                cwd=workdir,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxUnavailable(
                f"Could not start the code sandbox: {exc}.",
                solution="Check the machine's process and memory limits, then retry.",
            ) from None
        exchange = _Exchange(process, limits)
        try:
            async with asyncio.timeout(limits.timeout_seconds):
                await asyncio.gather(
                    exchange.feed(payload), exchange.read_result(), exchange.read_logs()
                )
                await process.wait()
        except TimeoutError:
            exchange.stop("timeout")
        finally:
            _kill(process)  # also when this call is cancelled: nothing outlives it
            await process.wait()
        took = (time.perf_counter() - started) * 1000
        return exchange.outcome(took)


class _Exchange:
    """The conversation with one child: what it said, and why it was stopped, if it was."""

    def __init__(self, process: Process, limits: Limits) -> None:
        self.process = process
        self.limits = limits
        self.result = bytearray()
        self.logs = bytearray()
        self.log_total = 0
        self.stopped: str | None = None

    def stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
        _kill(self.process)

    async def feed(self, payload: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(payload)
            await stdin.drain()
            stdin.close()
            await stdin.wait_closed()

    async def read_result(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        cap = self.limits.max_output_bytes + _ENVELOPE_BYTES
        while chunk := await stdout.read(_CHUNK):
            self.result += chunk
            if len(self.result) > cap:
                self.stop("result_too_large")
                return

    async def read_logs(self) -> None:
        stderr = self.process.stderr
        assert stderr is not None
        keep = self.limits.max_log_bytes
        while chunk := await stderr.read(_CHUNK):
            self.log_total += len(chunk)
            if len(self.logs) < keep:
                self.logs += chunk[: keep - len(self.logs)]
            if self.log_total > MAX_LOG_STREAM_BYTES:
                self.stop("logs_too_large")
                return

    def log_text(self) -> str:
        text = self.logs.decode("utf-8", "replace")
        if self.log_total > len(self.logs):
            text += f"\n[... {self.log_total - len(self.logs)} more bytes of output not kept]"
        return text

    def outcome(self, took_ms: float) -> CodeResult:
        logs = self.log_text()
        if self.stopped is not None:
            raise _stopped_error(self.stopped, self.limits, logs)
        status = self.process.returncode
        answer = _parse(bytes(self.result)) if status == 0 else None
        if answer is None:
            raise _death_error(status, bool(self.result), self.limits, logs)
        if answer["ok"]:
            return CodeResult(value=answer["value"], logs=logs, duration_ms=took_ms)
        raise _child_error(answer["error"], self.limits, logs)


def _make_workdir(identity: tuple[int, int] | None) -> tuple[Path, Path]:
    """A fresh directory for the child, inside one only root can list.

    Concurrent executions share one uid, so each one's directory has an unguessable name
    under a parent they may pass through but not read.
    """
    top = Path(tempfile.mkdtemp(prefix="loom-code-"))
    workdir = top / secrets.token_hex(16)
    workdir.mkdir(mode=0o700)
    if identity is not None:
        top.chmod(0o711)
        os.chown(workdir, *identity)
    return top, workdir


def _log_leftover(function: Any, path: str, exc_info: Any) -> None:
    log.warning("code sandbox: could not remove %s (%s)", path, exc_info[1])


def _kill(process: Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()  # in case the code left its process group


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The child's one result line, or None if it is anything else."""
    if not raw.endswith(b"\n") or raw.count(b"\n") != 1:
        return None
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        return None
    if answer["ok"] and "value" in answer:
        return answer
    error = answer.get("error")
    if not answer["ok"] and isinstance(error, dict) and isinstance(error.get("kind"), str):
        return answer
    return None


def _stopped_error(reason: str, limits: Limits, logs: str) -> CodeError:
    details = {"logs": logs}
    if reason == "timeout":
        return CodeTimeout(
            f"The code did not finish within {limits.timeout_seconds:g} s.",
            solution="Make it do less, or raise its timeout.",
            details=details,
        )
    if reason == "result_too_large":
        return _too_large(f"more than {limits.max_output_bytes} bytes", limits, details)
    return CodeOutputTooLarge(
        f"The code printed more than {MAX_LOG_STREAM_BYTES} bytes and was stopped.",
        solution="Print less; return data as the result of main() instead.",
        details=details,
    )


def _too_large(size: str, limits: Limits, details: dict[str, Any]) -> CodeOutputTooLarge:
    return CodeOutputTooLarge(
        f"The result of main() is {size} as JSON; the limit is {limits.max_output_bytes}.",
        solution="Return less data, e.g. aggregates or the first items.",
        details=details,
    )


def _death_error(status: int | None, said: bool, limits: Limits, logs: str) -> CodeError:
    details = {"exit_status": status, "logs": logs}
    if status is not None and status < 0:
        name = signal.Signals(-status).name if -status in signal.valid_signals() else -status
        if -status == signal.SIGXCPU:
            return CodeTimeout(
                f"The code used up its {limits.cpu} s of CPU time.",
                solution="Make it do less work, or raise its timeout.",
                details=details,
            )
        if -status == signal.SIGKILL:
            return CodeCrashed(
                "The code was killed by the system (CPU time or memory limit).",
                solution="Make it do less work or use less memory.",
                details=details,
            )
        return CodeCrashed(
            f"The code's process crashed ({name}).",
            solution="Deep recursion (in C code) or running out of memory are the usual "
            "causes; restructure the code or use less memory.",
            details=details,
        )
    what = "an unreadable result" if status == 0 and said else f"no result (status {status})"
    return CodeCrashed(
        f"The code's process ended with {what}.",
        solution="Return from main() rather than exiting; leave its descriptors open.",
        details=details,
    )


def _child_error(error: dict[str, Any], limits: Limits, logs: str) -> LoomError:
    kind = error["kind"]
    details: dict[str, Any] = {"logs": logs}
    if kind == "exception":
        details.update({k: error.get(k) for k in ("type", "message", "line", "traceback")})
        where = f" (line {error['line']})" if error.get("line") else ""
        return CodeFailed(
            f"main() raised {error.get('type')}{where}: {error.get('message')}",
            solution="Fix the code; the traceback shows where it failed.",
            details=details,
        )
    if kind == "syntax":
        return syntax_error(error.get("message"), error.get("line"), error.get("offset"))
    if kind == "no_main":
        return CodeInvalid(
            "The code does not define a function main(inputs).",
            solution="Define def main(inputs): ... and return a JSON value from it.",
            details=details,
        )
    if kind == "memory":
        return CodeMemoryExceeded(
            f"The code ran out of memory (limit {limits.memory_bytes // (1024 * 1024)} MB).",
            solution="Use less memory, or raise the node's memory_mb.",
            details=details,
        )
    if kind == "invalid_result":
        return CodeInvalidResult(
            f"main() returned a value that is not JSON: {error.get('message')}.",
            solution="Return only dicts, lists, strings, finite numbers, booleans and None.",
            details=details,
        )
    if kind == "too_large":
        return _too_large(f"{error.get('size')} bytes", limits, details)
    log.warning("code sandbox: the child could not set up: %s", error.get("message"))
    return SandboxUnavailable(
        f"The code sandbox could not be set up: {error.get('message')}.",
        solution="Report this with the log line; the code did not run.",
    )
