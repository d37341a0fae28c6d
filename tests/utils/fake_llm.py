"""A scripted OpenAI-compatible provider on 127.0.0.1 for tests of the LLM gateway.

Each test queues replies per model name; the gateway reaches the server through litellm as
``openai/<model>`` with ``api_base`` = ``FakeLlm.api_base``, like any provider. Every request
is kept (``requests``), so a test can assert how many calls reached the "provider".

    with fake_llm() as fake:
        fake.script("gpt-4o-mini", server_error(), chat("hello"))
        ...
        assert fake.calls("gpt-4o-mini") == 2

A model with nothing queued answers with its ``default`` reply if one is set, else a 599 that
names the model, so an unscripted call fails loudly.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httpx

from tests.utils.api import Session, create_credential
from tests.utils.loopback_http import Reply, Seen, serve

ReplyFor = Reply | Callable[[dict[str, Any]], Reply]

_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))


@dataclass
class FakeLlm:
    port: int
    requests: list[Request] = field(default_factory=list)
    scripts: dict[str, deque[ReplyFor]] = field(default_factory=dict)
    defaults: dict[str, ReplyFor] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, model: str, *replies: ReplyFor) -> None:
        """Queue ``replies`` for ``model``, answered in order, one per request."""
        with self.lock:
            self.scripts.setdefault(model, deque()).extend(replies)

    def always(self, model: str, reply: ReplyFor) -> None:
        """Answer ``model`` with ``reply`` whenever nothing is queued for it."""
        with self.lock:
            self.defaults[model] = reply

    def requests_for(self, model: str) -> list[Request]:
        """The requests that named ``model``, in order."""
        with self.lock:
            return [r for r in self.requests if r.model == model]

    def calls(self, model: str | None = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests if model is None or r.model == model)

    def handle(self, seen: Seen) -> Reply:
        try:
            body = json.loads(seen.body or b"{}")
        except ValueError:
            return _error(400, "invalid_request_error", "The fake provider got invalid JSON.")
        request = Request(path=seen.path, headers=seen.headers, body=body)
        with self.lock:
            self.requests.append(request)
            queued = self.scripts.get(request.model)
            reply = queued.popleft() if queued else self.defaults.get(request.model)
        if reply is None:
            return _error(599, "unscripted", f"Nothing scripted for model {request.model!r}.")
        return reply(body) if callable(reply) else reply


@contextmanager
def fake_llm() -> Iterator[FakeLlm]:
    holder: list[FakeLlm] = []
    with serve(lambda seen: holder[0].handle(seen)) as server:
        holder.append(FakeLlm(port=server.port))
        try:
            yield holder[0]
        finally:
            holder[0].closing.set()  # ends replies that hang mid-stream


# -- replies ---------------------------------------------------------------------------------


def chat(
    text: str | None = "ok",
    *,
    tool_calls: Sequence[tuple[str, dict[str, Any]]] = (),
    tokens_in: int = 10,
    tokens_out: int = 5,
    finish_reason: str | None = None,
    model: str = "gpt-4o-mini",
) -> Reply:
    """A chat completion with ``text`` and/or tool calls given as (name, arguments)."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{index}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for index, (name, arguments) in enumerate(tool_calls)
        ]
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        },
    }
    return Reply(200, json.dumps(body).encode(), dict(_JSON))


def stream(
    pieces: list[str],
    *,
    tool_call: tuple[str, str] | None = None,
    tokens_in: int = 10,
    tokens_out: int = 5,
    model: str = "gpt-4o-mini",
) -> Reply:
    """An SSE stream: one chunk per text piece, then optionally a tool call whose JSON
    arguments arrive in two fragments, then a usage chunk and [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    if tool_call is not None:
        name, arguments = tool_call
        half = len(arguments) // 2
        first = {"index": 0, "id": "call_0", "type": "function"}
        events.append(
            chunk({"tool_calls": [{**first, "function": {"name": name, "arguments": ""}}]})
        )
        for part in (arguments[:half], arguments[half:]):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
    events.append(chunk({}, "tool_calls" if tool_call else "stop"))
    usage = {
        "prompt_tokens": tokens_in,
        "completion_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    final = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000}
    final |= {"model": model, "choices": [], "usage": usage}
    events.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return Reply(200, events, {"Content-Type": "text/event-stream"})


def stream_then_hang(fake: FakeLlm, pieces: list[str], seconds: float = 30.0) -> Reply:
    """A stream that sends ``pieces`` and then nothing more for ``seconds``."""
    sent = stream(pieces)
    assert not isinstance(sent.body, bytes)
    first = list(sent.body)[: 1 + len(pieces)]  # the role chunk and the pieces

    def body() -> Iterator[bytes]:
        yield from first
        fake.closing.wait(seconds)

    return Reply(200, body(), sent.headers)


def embeddings(
    dimensions: int = 3, *, tokens_per_input: int = 4
) -> Callable[[dict[str, Any]], Reply]:
    """Embeddings for whatever was sent: input i gets the vector [i, i, ...] + 0.5."""

    def reply(body: dict[str, Any]) -> Reply:
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        data = [
            {"object": "embedding", "index": i, "embedding": [i + 0.5] * dimensions}
            for i in range(count)
        ]
        tokens = count * tokens_per_input
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        out = {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        return Reply(200, json.dumps(out).encode(), dict(_JSON))

    return reply


def _error(status: int, kind: str, message: str, code: str | None = None) -> Reply:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Reply(status, json.dumps(body).encode(), dict(_JSON))


def rate_limited(retry_after: float | None = 1.0) -> Reply:
    reply = _error(429, "requests", "Rate limit reached for requests.", "rate_limit_exceeded")
    if retry_after is not None:
        reply.headers["Retry-After"] = f"{retry_after:g}"
    return reply


def quota_exceeded() -> Reply:
    """OpenAI's out-of-credit answer: a 429 that retrying cannot fix."""
    return _error(
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
    )


def server_error(status: int = 500) -> Reply:
    return _error(status, "server_error", "The server had an error while processing your request.")


def auth_error() -> Reply:
    return _error(
        401, "invalid_request_error", "Incorrect API key provided: sk-fake.", "invalid_api_key"
    )


def context_length_error() -> Reply:
    return _error(
        400,
        "invalid_request_error",
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 200000 tokens. Please reduce the length of the messages.",
        "context_length_exceeded",
    )


def model_not_found() -> Reply:
    return _error(
        404, "invalid_request_error", "The model `nope` does not exist.", "model_not_found"
    )


def hang(seconds: float = 30.0) -> Reply:
    """No answer for ``seconds`` (cut short when the server stops)."""
    return Reply(200, b"{}", dict(_JSON), delay=seconds)


def malformed() -> Reply:
    """A 200 whose body is not JSON."""
    return Reply(200, b'{"id": "chatcmpl-fake", "choices": [{"mess', dict(_JSON))


def provider_host(fake: FakeLlm) -> str:
    """The allowlist entry that lets a workspace reach the scripted provider."""
    return fake.api_base.removeprefix("http://").removesuffix("/v1")


def provider_key(client: httpx.Client, session: Session, fake: FakeLlm, key: str = "sk-t") -> str:
    """A new ``llm_api_key`` credential of the session's workspace that points at the
    scripted provider; its id."""
    data = {"provider": "openai", "api_key": key, "api_base": fake.api_base}
    return create_credential(client, session, "llm_api_key", data)


def _serve_until_told(conn: Connection, text: str, tokens_in: int, tokens_out: int) -> None:
    with fake_llm() as fake:
        fake.always("gpt-4o-mini", chat(text, tokens_in=tokens_in, tokens_out=tokens_out))
        conn.send(fake.api_base)
        conn.recv()


@contextmanager
def fake_llm_process(text: str, *, tokens_in: int, tokens_out: int) -> Iterator[str]:
    """The scripted provider in a child process, always answering ``gpt-4o-mini`` with
    ``text`` (benchmarks: it does not share the GIL with what is measured); its api_base."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_serve_until_told, args=(child, text, tokens_in, tokens_out))
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("The fake provider did not start within 60 s.")
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=10)
