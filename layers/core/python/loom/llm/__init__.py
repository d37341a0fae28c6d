"""The LLM gateway: every model call in Loom goes through ``loom.llm.gateway.LlmGateway``.

Importing this package is cheap: litellm (about 2.5 s) is imported by ``loom.llm._litellm``
on the first call that needs it, never at import time.
"""
