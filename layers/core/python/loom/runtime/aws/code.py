"""ACTION.CODE on AWS: the node's function asks the code function to run the user's code.

The code function has no permissions, no VPC access to the database and no secrets in
its environment; inside it, the code still runs in the sandbox process (``loom.sandbox``).
Results and errors cross as JSON, and each error comes back as the same ``CodeError`` the
local runner raises.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from loom.errors import LoomError
from loom.runtime.aws.clients import client
from loom.sandbox import (
    CodeCrashed,
    CodeError,
    CodeFailed,
    CodeInvalid,
    CodeInvalidResult,
    CodeMemoryExceeded,
    CodeOutputTooLarge,
    CodeResult,
    CodeTimeout,
    Limits,
    LocalProcessRunner,
    SandboxUnavailable,
)

_ERRORS: dict[str, type[LoomError]] = {
    kind.code: kind
    for kind in (
        CodeInvalid,
        CodeFailed,
        CodeTimeout,
        CodeMemoryExceeded,
        CodeOutputTooLarge,
        CodeInvalidResult,
        CodeCrashed,
        SandboxUnavailable,
    )
}


class LambdaCodeRunner:
    """``CodeRunner`` that runs code in the code function."""

    def __init__(self, function: str) -> None:
        self.function = function

    async def run(self, code: str, inputs: Any, limits: Limits) -> CodeResult:
        payload = {"code": code, "inputs": inputs, "limits": dataclasses.asdict(limits)}
        reply = await asyncio.to_thread(self._invoke, json.dumps(payload).encode())
        if reply.get("ok"):
            return CodeResult(reply["value"], str(reply.get("logs", "")), reply["duration_ms"])
        error = reply.get("error") or {}
        kind = _ERRORS.get(str(error.get("code")), CodeCrashed)
        raise kind(
            str(error.get("message", "The code function failed.")),
            solution=str(error.get("solution", "")),
            details=error.get("details"),
        )

    def _invoke(self, payload: bytes) -> dict[str, Any]:
        answer = client("lambda").invoke(FunctionName=self.function, Payload=payload)
        body = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError"):
            message = body.get("errorMessage", "no message") if isinstance(body, dict) else body
            raise CodeCrashed(
                f"The code function failed ({answer['FunctionError']}): {message}",
                solution="Lower the code's memory_mb or timeout_seconds, or simplify it.",
            )
        reply: dict[str, Any] = body
        return reply


def run_code(event: Mapping[str, Any]) -> dict[str, Any]:
    """The code function: run ``main(inputs)`` in the sandbox; the result or the error."""
    limits = Limits(**event.get("limits", {}))
    runner = LocalProcessRunner()
    try:
        result = asyncio.run(runner.run(str(event["code"]), event.get("inputs"), limits))
    except (CodeError, SandboxUnavailable) as exc:
        return {"ok": False, "error": exc.to_dict()}
    return {
        "ok": True,
        "value": result.value,
        "logs": result.logs,
        "duration_ms": result.duration_ms,
    }
