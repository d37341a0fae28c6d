"""Local mode's offline default models: what a laptop (or CI's 2 cores) gets from them.

Chat (SmolLM2-135M-Instruct in xllamacpp's server, through litellm as openai/...): time
from the first ``local_endpoint`` call to a healthy server (process start and model load),
time to first token and tokens per second of a streamed answer (after one warm-up call,
so litellm's own lazy imports are not counted), a JSON-schema answer and whether it
validates, and whether tool calls come back. Embeddings (all-MiniLM-L6-v2 int8 ONNX): model
load, then embeddings per second in batches of 64 short texts and of 64 long ones.

Prints figures only; timing is never asserted (the machine is shared). ``bench/llm.py``
may call ``main`` or the two ``*_figures`` functions.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jsonschema  # noqa: E402

from loom.llm._litellm import litellm  # noqa: E402
from loom.llm.local import (  # noqa: E402
    DEFAULT_CHAT_MODEL,
    LocalEndpoint,
    embed,
    local_endpoint,
    stop_local_models,
)

STREAM_RUNS = 3
STREAM_MAX_TOKENS = 128
EMBED_TEXTS = 512
EMBED_BATCH = 64
TRIAGE = {
    "type": "object",
    "properties": {
        "urgency": {"type": "string", "enum": ["low", "medium", "high"]},
        "reason": {"type": "string", "maxLength": 80},
    },
    "required": ["urgency", "reason"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _line(label: str, value: str) -> None:
    print(f"  {label:<44}{value}")


async def _ask(endpoint: LocalEndpoint, content: str, **options: Any) -> Any:
    return await litellm().acompletion(
        model=endpoint.litellm_model,
        api_base=endpoint.api_base,
        api_key=endpoint.api_key,
        messages=[{"role": "user", "content": content}],
        **options,
    )


async def _streamed(endpoint: LocalEndpoint) -> tuple[float, float, int]:
    """Seconds to the first token, tokens per second after it, tokens."""
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    stream = await _ask(
        endpoint,
        "Write a long story about a lighthouse keeper.",
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=STREAM_MAX_TOKENS,
        temperature=0.7,
    )
    async for chunk in stream:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            tokens = usage.completion_tokens
    ended = time.perf_counter()
    return first - started, (tokens - 1) / (ended - first), tokens


async def _chat() -> None:
    started = time.perf_counter()
    endpoint = await local_endpoint(DEFAULT_CHAT_MODEL)
    _line("server start to healthy (load included)", f"{time.perf_counter() - started:6.2f} s")
    await _ask(endpoint, "Hello!", max_tokens=8)  # litellm's lazy imports
    runs = [await _streamed(endpoint) for _ in range(STREAM_RUNS)]
    ttfts = sorted(run[0] for run in runs)
    rates = sorted(run[1] for run in runs)
    _line(
        f"time to first token, median of {STREAM_RUNS}", f"{ttfts[len(ttfts) // 2] * 1000:6.0f} ms"
    )
    _line(
        f"tokens/s streamed ({STREAM_MAX_TOKENS} tokens), median",
        f"{rates[len(rates) // 2]:6.1f} (min {rates[0]:.1f}, max {rates[-1]:.1f})",
    )

    started = time.perf_counter()
    reply = await _ask(
        endpoint,
        "Ticket: the production database is down; nobody can log in. Classify its urgency.",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "triage", "schema": TRIAGE, "strict": True},
        },
        max_tokens=120,
        temperature=0,
    )
    took = time.perf_counter() - started
    content = reply.choices[0].message.content
    try:
        jsonschema.validate(json.loads(content), TRIAGE)
        verdict = "valid"
    except (ValueError, jsonschema.ValidationError) as exc:
        verdict = f"INVALID ({exc})"
    _line("JSON-schema answer", f"{took:6.2f} s, {verdict}: {content!r}")

    reply = await _ask(
        endpoint, "What is the weather in Paris? Use the tool.", tools=[WEATHER_TOOL], max_tokens=32
    )
    calls = reply.choices[0].message.tool_calls
    _line("tool calls returned", "yes" if calls else "no (tools are ignored)")


def chat_figures() -> None:
    print(f"Chat: local/{DEFAULT_CHAT_MODEL} through litellm (openai/... with an api_base)")
    try:
        asyncio.run(_chat())
    finally:
        stop_local_models()


def _texts(words: tuple[int, int]) -> list[str]:
    vocabulary = (  # noqa: SIM905 - one line of words reads better than 26 strings
        "customer ticket server database login error payment refund urgent please help slow "
        "page crash account password reset invoice the a is not since yesterday our team"
    ).split()
    chooser = random.Random(7)
    return [
        " ".join(chooser.choice(vocabulary) for _ in range(chooser.randint(*words)))
        for _ in range(EMBED_TEXTS)
    ]


def _per_second(texts: list[str]) -> float:
    started = time.perf_counter()
    for start in range(0, len(texts), EMBED_BATCH):
        embed(texts[start : start + EMBED_BATCH])
    return len(texts) / (time.perf_counter() - started)


def embedding_figures() -> None:
    print("Embeddings: all-MiniLM-L6-v2 int8 ONNX on onnxruntime, in-process")
    started = time.perf_counter()
    embed(["warm up"])
    _line("model load and first embedding", f"{(time.perf_counter() - started) * 1000:6.0f} ms")
    short, long = _texts((4, 12)), _texts((40, 80))
    _line(f"embeddings/s, batches of {EMBED_BATCH}, 4-12 words", f"{_per_second(short):6.0f}")
    _line(f"embeddings/s, batches of {EMBED_BATCH}, 40-80 words", f"{_per_second(long):6.0f}")


def main() -> None:
    chat_figures()
    embedding_figures()
    print(f"  load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs while measuring")


if __name__ == "__main__":
    main()
