"""ACTION.CODE parameters: checked (and the code compiled, never run) without a process."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from loom.errors import ValidationFailed
from loom.nodes.code import SPEC, CodeParameters
from loom.sandbox import CodeInvalid, check_syntax
from loom.workflows.validation import validate_definition


def _workflow(code: str, **parameters: Any) -> dict[str, Any]:
    parameters = {"code": code, **parameters}
    node = {"id": "calc", "type": "ACTION", "subtype": "CODE", "parameters": parameters}
    trigger = {"id": "start", "type": "TRIGGER", "subtype": "MANUAL"}
    return {"name": "code", "nodes": [trigger, node], "edges": [{"from": "start", "to": "calc"}]}


def test_defaults_and_bounds() -> None:
    params = CodeParameters(code="def main(inputs):\n    return 1")
    assert (params.timeout_seconds, params.memory_mb) == (10, 256)
    for bad in ({"timeout_seconds": 301}, {"timeout_seconds": 0}, {"memory_mb": 4096}):
        with pytest.raises(ValidationError):
            CodeParameters(code="def main(inputs):\n    return 1", **bad)


def test_code_over_100_kb_is_refused() -> None:
    with pytest.raises(ValidationError, match="larger than 100 KB"):
        CodeParameters(code="x = 1\n" * 20_000)


def test_a_syntax_error_is_a_parameter_error_naming_the_line() -> None:
    with pytest.raises(ValidationError, match="does not compile at line 2, column 12"):
        CodeParameters(code="def main(inputs):\n    return (1 +")


def test_check_syntax_compiles_without_running() -> None:
    check_syntax("raise SystemExit('this would stop the parent if it ran')")
    with pytest.raises(CodeInvalid) as caught:
        check_syntax("def main(inputs)\n    return 1")
    assert caught.value.details["line"] == 1
    with pytest.raises(CodeInvalid):
        check_syntax("x = 1\0")  # NUL bytes cannot be compiled


def test_a_syntax_error_is_reported_on_save_with_its_path() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_definition(_workflow("def main(inputs):\n    return ("))
    [problem] = caught.value.details
    assert problem["path"] == "nodes[1].parameters.code"
    assert "line 2" in problem["message"]


def test_code_is_deferred_so_the_engine_never_evaluates_it() -> None:
    assert SPEC.deferred == frozenset({"code"})
    validate_definition(_workflow("def main(inputs):\n    return 'x'", timeout_seconds=30))
