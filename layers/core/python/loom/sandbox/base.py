"""What every code runner offers: limits in, a JSON value (or a clear error) out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from loom.errors import LoomError

MIB = 1024 * 1024
USER_FILE = "<code>"  # the file name user code is compiled under, in parent and child


@dataclass(frozen=True)
class Limits:
    """Bounds of one execution.

    ``cpu_seconds`` defaults to a second more than the wall-clock timeout: the parent's
    timeout is what normally stops the code, the CPU limit still does if the parent dies.
    """

    timeout_seconds: float = 10.0
    cpu_seconds: int | None = None
    memory_bytes: int = 256 * MIB
    file_size_bytes: int = 1 * MIB
    open_files: int = 32
    max_output_bytes: int = 1 * MIB
    max_log_bytes: int = 64 * 1024

    @property
    def cpu(self) -> int:
        return self.cpu_seconds or math.ceil(self.timeout_seconds) + 1


@dataclass(frozen=True)
class CodeResult:
    value: Any
    logs: str
    duration_ms: float


class CodeRunner(Protocol):
    async def run(self, code: str, inputs: Any, limits: Limits) -> CodeResult:
        """Run ``main(inputs)`` of ``code`` in isolation; raise a ``CodeError`` on failure."""
        ...


class CodeError(LoomError):
    """The user's code did not produce a result; ``details`` may hold its logs."""

    code: ClassVar[str] = "code_failed"
    retryable: ClassVar[bool] = False


class CodeInvalid(CodeError):
    """Not runnable: a syntax error, or no ``main``."""

    code = "code_invalid"
    status = 422


class CodeFailed(CodeError):
    """``main`` raised; ``details`` has the type, message, line and traceback."""

    code = "code_failed"


class CodeTimeout(CodeError):
    code = "code_timeout"
    retryable = True  # a loaded machine may be the reason


class CodeMemoryExceeded(CodeError):
    code = "code_memory_exceeded"


class CodeOutputTooLarge(CodeError):
    code = "code_output_too_large"


class CodeInvalidResult(CodeError):
    code = "code_invalid_result"


class CodeCrashed(CodeError):
    """The process died without a result: a signal, an exit, or an unreadable answer."""

    code = "code_crashed"


class SandboxUnavailable(LoomError):
    """The sandbox itself could not be started or set up; the code did not run."""

    code = "sandbox_unavailable"
    status = 503
    retryable = True


def check_syntax(code: str) -> None:
    """Compile (never run) ``code`` as the sandbox will; raise ``CodeInvalid`` if it fails."""
    try:
        compile(code, USER_FILE, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise syntax_error(exc.msg, exc.lineno, exc.offset) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        raise syntax_error(str(exc) or type(exc).__name__, None, None) from None


def syntax_error(message: Any, line: Any, offset: Any) -> CodeInvalid:
    where = (f" at line {line}" + (f", column {offset}" if offset else "")) if line else ""
    return CodeInvalid(
        f"The code does not compile{where}: {message}.",
        solution="Fix the syntax; the code must define def main(inputs): ...",
        details={"line": line, "offset": offset, "message": message},
    )
