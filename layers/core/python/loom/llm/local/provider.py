"""The litellm custom provider ``loom_local``: local embeddings behind ``litellm.aembedding``.

Imported only by ``register_local_embeddings``, after ``loom.llm._litellm`` has configured
litellm, because importing it imports litellm.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litellm import CustomLLM, Usage
from litellm.llms.custom_llm import CustomLLMError

from loom.errors import InvalidInput, LoomError
from loom.llm.local.embeddings import (
    EMBEDDING_DIMENSIONS,
    LITELLM_EMBEDDING_MODEL,
    Embedded,
    check_model,
    embed_async,
    embed_counting,
)


class LocalEmbeddingProvider(CustomLLM):  # type: ignore[misc]  # litellm is not followed
    """``embedding`` and ``aembedding`` of litellm's CustomLLM; no chat.

    Loom's errors leave as litellm's ``CustomLLMError`` with their HTTP status, which
    litellm turns into its usual exceptions (``BadRequestError``, ``ServiceUnavailableError``)
    with the message and solution as text."""

    def embedding(self, model: str, input: Any, model_response: Any, **kwargs: Any) -> Any:
        with _as_litellm_errors():
            _check(model, kwargs.get("optional_params"))
            return _response(model_response, embed_counting(_texts(input)))

    async def aembedding(self, model: str, input: Any, model_response: Any, **kwargs: Any) -> Any:
        with _as_litellm_errors():
            _check(model, kwargs.get("optional_params"))
            return _response(model_response, await embed_async(_texts(input)))


@contextmanager
def _as_litellm_errors() -> Iterator[None]:
    try:
        yield
    except LoomError as exc:
        raise CustomLLMError(status_code=exc.status, message=exc.one_line()) from exc


def _texts(given: Any) -> Any:
    """OpenAI's API takes one string or a list of them."""
    return [given] if isinstance(given, str) else given


def _check(model: str, optional_params: Any) -> None:
    check_model(model)
    wanted = (optional_params or {}).get("dimensions")
    if wanted is not None and wanted != EMBEDDING_DIMENSIONS:
        raise InvalidInput(
            f"{LITELLM_EMBEDDING_MODEL} makes {EMBEDDING_DIMENSIONS}-dimensional vectors, "
            f"not {wanted}.",
            solution="Leave `dimensions` out.",
        )


def _response(model_response: Any, embedded: Embedded) -> Any:
    model_response.model = LITELLM_EMBEDDING_MODEL
    model_response.object = "list"
    model_response.data = [
        {"object": "embedding", "index": index, "embedding": vector}
        for index, vector in enumerate(embedded.vectors)
    ]
    model_response.usage = Usage(
        prompt_tokens=embedded.tokens, completion_tokens=0, total_tokens=embedded.tokens
    )
    return model_response
