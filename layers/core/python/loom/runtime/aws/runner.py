"""The node runner of a Lambda container, for the functions that execute nodes (the node
functions, the exam worker): built on first use by ``AwsPlatform.runner`` (or
``model_runner``). The others (advance, triggers, human waits) never import it. The model
gateway, with the HTTP client behind it, is built for the model callers only; the agent
runtime only when an agent first runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loom.engine.runner import LocalRunner
from loom.secrets.vault import vault_for

if TYPE_CHECKING:
    from loom.llm.gateway import LlmGateway
    from loom.runtime.aws.platform import AwsPlatform


def build_runner(platform: AwsPlatform, *, models: bool) -> LocalRunner:
    """``models``: with the model gateway (only the model callers have the llm layer)."""
    settings = platform.settings
    vault = vault_for(settings)
    llm: LlmGateway | None = None
    if models:
        from loom.llm.gateway import LlmGateway

        llm = LlmGateway(platform.db, settings=settings, vault=vault)
    runner = LocalRunner(
        platform.engine,
        per_run_limit=settings.run_concurrency,
        global_limit=settings.engine_concurrency,
        vault=vault,
        base_url=settings.base_url,
        llm=llm,
    )
    if settings.code_function:
        from loom.nodes import code
        from loom.runtime.aws.code import LambdaCodeRunner

        code.RUNNER = LambdaCodeRunner(settings.code_function)
    return runner
