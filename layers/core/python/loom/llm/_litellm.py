"""The one place Loom imports litellm.

litellm takes seconds to import, so only the functions that call models pay for it, on
their first call. Its price map is the copy bundled with the package: nothing is fetched
at start. Its Hugging Face tokenizers are never downloaded (token estimates use the
bundled tiktoken files), and its loggers stay at WARNING, as request logs may echo keys.
"""

from __future__ import annotations

import asyncio
import logging
import os
from functools import cache
from typing import Any


@cache
def litellm() -> Any:
    """The configured litellm module (typed ``Any``: loom.llm is its only user)."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm as module

    module.suppress_debug_info = True
    module.disable_hf_tokenizer_download = True
    module.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.WARNING))
    return module


async def loaded() -> Any:
    """``litellm()`` for coroutines: the first import runs on a worker thread, so the event
    loop (the local engine's, say) keeps serving other work for those seconds."""
    if litellm.cache_info().currsize:
        return litellm()
    return await asyncio.to_thread(litellm)
