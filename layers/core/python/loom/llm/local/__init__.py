"""Local mode's offline default models: a chat model and an embedding model.

Chat: ``local/smollm2-135m-instruct`` (and ``local/custom`` with LOOM_LOCAL_MODEL_FILE),
served by xllamacpp in a child process on 127.0.0.1 and reached through litellm as an
OpenAI-compatible endpoint (``local_endpoint``). Embeddings: all-MiniLM-L6-v2 on
onnxruntime (``embed``), also a litellm custom provider (``register_local_embeddings``).

Importing this package imports neither litellm, onnxruntime, numpy nor xllamacpp: the
functions that need them import them on first use.
"""

from loom.llm.local.embeddings import (
    EMBEDDING_DIMENSIONS,
    LITELLM_EMBEDDING_MODEL,
    embed,
    register_local_embeddings,
)
from loom.llm.local.models import (
    DEFAULT_CHAT_MODEL,
    LocalModelUnavailable,
    UnknownLocalModel,
)
from loom.llm.local.server import LocalEndpoint, local_endpoint, stop_local_models

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "EMBEDDING_DIMENSIONS",
    "LITELLM_EMBEDDING_MODEL",
    "LocalEndpoint",
    "LocalModelUnavailable",
    "UnknownLocalModel",
    "embed",
    "local_endpoint",
    "register_local_embeddings",
    "stop_local_models",
]
