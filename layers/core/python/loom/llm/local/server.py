"""The local chat model server: one child process per local model and Loom process.

``local_endpoint`` starts ``serve.py`` on first use (xllamacpp's OpenAI-compatible
llama.cpp server on 127.0.0.1, a port the system picks, a random API key), waits until it
answers ``/health``, and returns where litellm reaches it (``openai/<name>`` with an
``api_base``). Later calls reuse it, from any thread or event loop; concurrent first calls
start one server; a server that died is started again. ``stop_local_models`` stops them
all; it also runs at exit, and a parent that dies takes its servers with it (they serve
until their stdin closes).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import secrets
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from loom.config import get_settings
from loom.llm.local.models import (
    LocalChatModel,
    LocalModelUnavailable,
    chat_model,
    require_module,
)

log = logging.getLogger(__name__)

SERVE = Path(__file__).with_name("serve.py")
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 5.0
_HEALTH_POLL_SECONDS = 0.05
_STDERR_TAIL_BYTES = 1500


@dataclass(frozen=True)
class LocalEndpoint:
    """Where a running local model answers, for ``litellm.acompletion(model=litellm_model,
    api_base=api_base, api_key=api_key)``. The server refuses any other key."""

    api_base: str  # http://127.0.0.1:<port>/v1
    litellm_model: str  # openai/<name>
    api_key: str
    notice: str  # say this with the model's answers (e.g. in a node's output metadata)
    supports_tools: bool  # False: tools are ignored and no tool calls come back


@dataclass(frozen=True)
class _Server:
    name: str
    process: subprocess.Popen[str]
    stderr: IO[bytes]

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Close its stdin (it exits by itself), and kill it if it does not."""
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # it had already exited
                self.process.stdin.close()
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()

    def stderr_tail(self) -> str:
        """The end of its log (llama.cpp's errors), on one line."""
        self.stderr.seek(0, 2)
        size = self.stderr.tell()
        self.stderr.seek(max(0, size - _STDERR_TAIL_BYTES))
        lines = self.stderr.read().decode(errors="replace").splitlines()
        return " / ".join(line.strip() for line in lines if line.strip())


_lock = threading.Lock()
_servers: dict[str, tuple[_Server, LocalEndpoint]] = {}
_stop_at_exit = False


async def local_endpoint(model: str) -> LocalEndpoint:
    """The running server of local model ``model`` (``<name>`` or ``local/<name>``),
    started first if need be (a few seconds for SmolLM2-135M).

    Raises ``UnknownLocalModel`` (listing the known ones) or ``LocalModelUnavailable``
    (a package to install, or why the server did not start)."""
    name = model.removeprefix("local/")
    found = _servers.get(name)
    if found is not None and found[0].running():
        return found[1]
    return await asyncio.to_thread(_start_or_reuse, name)


def stop_local_models() -> None:
    """Stop every local model server of this process (the next call starts them again)."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for served, _ in servers:
        served.stop()


def _start_or_reuse(name: str) -> LocalEndpoint:
    global _stop_at_exit
    with _lock:
        found = _servers.pop(name, None)
        if found is not None:
            served, endpoint = found
            if served.running():
                _servers[name] = found
                return endpoint
            log.warning(
                "The server of local/%s exited (code %s); starting it again. Its last words: %s",
                name,
                served.process.returncode,
                served.stderr_tail() or "none",
            )
            served.stop()
        settings = get_settings()
        model = chat_model(name, settings.local_model_file)
        require_module("xllamacpp", "xllamacpp", f"Local model local/{name}")
        if not _stop_at_exit:
            atexit.register(stop_local_models)
            _stop_at_exit = True
        _servers[name] = _start(model, settings.local_model_context, settings.local_model_threads)
        return _servers[name][1]


def _start(model: LocalChatModel, context: int, threads: int) -> tuple[_Server, LocalEndpoint]:
    path = model.path()
    api_key = secrets.token_urlsafe(24)
    started = time.monotonic()
    command = [sys.executable, "-I", str(SERVE), "--model-file", str(path)]
    command += ["--alias", model.name, "--context", str(context), "--threads", str(threads)]
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - open while it runs; closed by stop()
    process = subprocess.Popen(  # noqa: S603 - our script, a file path and numbers
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,  # Ctrl-C in a terminal reaches Loom, which stops it
    )
    served = _Server(model.name, process, stderr)
    try:
        assert process.stdin is not None
        process.stdin.write(api_key + "\n")
        process.stdin.flush()
        address = _wait_for_address(served, started + START_TIMEOUT_SECONDS)
        _wait_until_healthy(served, address, started + START_TIMEOUT_SECONDS)
    except BaseException:
        served.stop()
        raise
    endpoint = LocalEndpoint(
        api_base=f"{address}/v1",
        litellm_model=f"openai/{model.name}",
        api_key=api_key,
        notice=model.notice,
        supports_tools=model.supports_tools,
    )
    log.info(
        "Local model local/%s serving at %s (started in %.1f s, pid %d)",
        model.name,
        address,
        time.monotonic() - started,
        process.pid,
    )
    return served, endpoint


def _wait_for_address(served: _Server, deadline: float) -> str:
    """The address the server writes on its stdout once the model is loaded."""
    stdout = served.process.stdout
    assert stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        ready = selector.select(max(0.0, deadline - time.monotonic()))
    if not ready:
        raise _did_not_start(served, f"it was still loading after {START_TIMEOUT_SECONDS:g} s")
    line = stdout.readline()
    try:
        address = json.loads(line)["address"] if line else None
    except (ValueError, TypeError, KeyError):
        address = None
    if not isinstance(address, str) or not address.startswith("http://127.0.0.1:"):
        raise _did_not_start(served, f"it wrote {line.strip()!r}" if line else "it exited")
    return address


def _wait_until_healthy(served: _Server, address: str, deadline: float) -> None:
    import httpx  # here, not at import: importing loom.llm.local stays cheap

    with httpx.Client(timeout=5.0, trust_env=False) as client:
        while True:
            try:
                if client.get(f"{address}/health").status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass  # not accepting connections yet
            if not served.running() or time.monotonic() > deadline:
                raise _did_not_start(served, f"{address}/health did not answer")
            time.sleep(_HEALTH_POLL_SECONDS)


def _did_not_start(served: _Server, why: str) -> LocalModelUnavailable:
    if served.running():
        served.process.kill()
        served.process.wait()
    tail = served.stderr_tail()
    return LocalModelUnavailable(
        f"The local model local/{served.name} did not start: {why}."
        + (f" Its log ends: {tail}" if tail else ""),
        solution="Check that the machine has a few hundred MB of memory free; a GGUF file "
        "set in LOOM_LOCAL_MODEL_FILE must be a llama.cpp chat model.",
    )
