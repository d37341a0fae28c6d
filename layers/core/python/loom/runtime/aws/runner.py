"""The node runner of a Lambda container, for the functions that execute nodes (the node
functions, the exam worker): built on first use by ``AwsPlatform.runner``. The others
(advance, triggers, human waits) never import it, nor the agent runtime and the model
gateway behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loom.engine.runner import LocalRunner
from loom.llm.gateway import LlmGateway
from loom.secrets.vault import vault_for

if TYPE_CHECKING:
    from loom.runtime.aws.platform import AwsPlatform


def build_runner(platform: AwsPlatform) -> LocalRunner:
    settings = platform.settings
    vault = vault_for(settings)
    runner = LocalRunner(
        platform.engine,
        per_run_limit=settings.run_concurrency,
        global_limit=settings.engine_concurrency,
        vault=vault,
        base_url=settings.base_url,
        llm=LlmGateway(platform.db, settings=settings, vault=vault),
    )
    if settings.code_function:
        from loom.nodes import code
        from loom.runtime.aws.code import LambdaCodeRunner

        code.RUNNER = LambdaCodeRunner(settings.code_function)
    return runner
