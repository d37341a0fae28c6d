"""Node overhead against doing the same work by hand.

HTTP: ACTION.HTTP_REQUEST (parameters validated, the outbound checks, a pinned connection,
the capped read, the output built) against plain ``httpx.AsyncClient`` GETs to the same
loopback server, sequentially. Prints ms per request each way and the ratio (target
<= 1.5x). The server runs in its own process, so it does not compete for the GIL with the
client being measured.

CODE: ACTION.CODE end to end (code compiled, a fresh sandboxed process, the result
read): the first execution in the process, and the p50 of 20 more (target <= 100 ms).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from loom.nodes.base import NodeContext  # noqa: E402
from loom.nodes.code import SPEC as CODE_SPEC  # noqa: E402
from loom.nodes.http_request import SPEC  # noqa: E402
from tests.utils.loopback_http import Reply, Seen, serve  # noqa: E402

REQUESTS = 500
ROUNDS = 5
WARMUP = 20
HTTP_TARGET_RATIO = 1.5


class _Services:
    def __init__(self, allowlist: Sequence[str]) -> None:
        self._allowlist = list(allowlist)

    async def credential(self, credential_id: str) -> Any:
        raise LookupError(credential_id)

    @property
    def outbound_allowlist(self) -> Sequence[str]:
        return self._allowlist


def _ok(seen: Seen) -> Reply:
    return Reply(200, b'{"ok":true}', {"Content-Type": "application/json"})


def _serve_until_told(conn: Connection) -> None:
    with serve(_ok) as server:
        conn.send(server.port)
        conn.recv()


@contextmanager
def _server_process() -> Iterator[int]:
    """A loopback server in a child process; yields its port."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve_until_told, args=(child,))
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("The bench's HTTP server did not start within 30 s.")
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=5)


async def _timed(send: Callable[[], Awaitable[None]], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await send()
    return time.perf_counter() - started


async def _http_race(port: int) -> tuple[float, float]:
    """ms per request for plain httpx and for the node, measured in alternating rounds so
    that noise from a busy machine falls on both alike."""
    url = f"http://127.0.0.1:{port}/item"
    ctx = NodeContext(
        workspace_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        node_run_id=uuid.uuid4(),
        node_id="call",
        attempt=1,
        run_input={},
        upstream={},
        services=_Services([f"127.0.0.1:{port}"]),
    )
    parameters = {"url": url, "query": {"id": "7"}}
    execute = SPEC.execute
    assert execute is not None

    async with httpx.AsyncClient() as client:

        async def plain() -> None:
            response = await client.get(url, params={"id": "7"})
            response.raise_for_status()
            assert response.json() == {"ok": True}

        async def node() -> None:
            result = await execute(ctx, SPEC.parameters.model_validate(parameters), {})
            assert result.output["body"] == {"ok": True}

        await _timed(plain, WARMUP)
        await _timed(node, WARMUP)
        totals = [0.0, 0.0]
        for _ in range(ROUNDS):
            totals[0] += await _timed(plain, REQUESTS // ROUNDS)
            totals[1] += await _timed(node, REQUESTS // ROUNDS)
    return totals[0] * 1000 / REQUESTS, totals[1] * 1000 / REQUESTS


def http_figures() -> None:
    with _server_process() as port:
        plain_ms, node_ms = asyncio.run(_http_race(port))
    ratio = node_ms / plain_ms
    verdict = "ok" if ratio <= HTTP_TARGET_RATIO else "OVER TARGET"
    print(f"HTTP: {REQUESTS} sequential GETs each way to a loopback server")
    print(f"  plain httpx.AsyncClient   {plain_ms:6.3f} ms/request")
    print(f"  ACTION.HTTP_REQUEST node  {node_ms:6.3f} ms/request")
    print(f"  ratio {ratio:.2f}x (target <= {HTTP_TARGET_RATIO}x): {verdict}")


CODE_RUNS = 20
CODE_TARGET_WARM_MS = 100.0
CODE_SOURCE = """\
import json


def main(inputs):
    items = inputs["input"]["items"]
    return {"doubled": [x * 2 for x in items], "as_json": json.dumps(items)}
"""


async def _code_node_ms() -> float:
    """One ACTION.CODE execution: parameters validated (the code compiled), a sandboxed
    process started, fed, its result read and checked."""
    ctx = NodeContext(
        workspace_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        node_run_id=uuid.uuid4(),
        node_id="calc",
        attempt=1,
        run_input={"items": [1, 2, 3]},
        upstream={},
    )
    assert CODE_SPEC.execute is not None
    started = time.perf_counter()
    params = CODE_SPEC.parameters.model_validate({"code": CODE_SOURCE})
    result = await CODE_SPEC.execute(ctx, params, {})
    took = (time.perf_counter() - started) * 1000
    assert result.output["doubled"] == [2, 4, 6]
    return took


async def _code_samples() -> tuple[float, list[float]]:
    cold = await _code_node_ms()
    return cold, [await _code_node_ms() for _ in range(CODE_RUNS)]


def code_figures() -> None:
    cold, warm = asyncio.run(_code_samples())
    p50 = statistics.median(warm)
    verdict = "ok" if p50 <= CODE_TARGET_WARM_MS else "OVER TARGET"
    target = f"(target <= {CODE_TARGET_WARM_MS:g} ms): {verdict}"
    print("CODE: ACTION.CODE end to end, one fresh sandboxed process per execution")
    print(f"  {'cold (first execution in this process)':<40}{cold:6.1f} ms")
    print(f"  {f'warm p50 of {CODE_RUNS}':<40}{p50:6.1f} ms {target}")
    print(f"  {'warm min / max':<40}{min(warm):6.1f} / {max(warm):.1f} ms")
    print(f"  load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs while measuring")


def main() -> None:
    http_figures()
    code_figures()


if __name__ == "__main__":
    main()
