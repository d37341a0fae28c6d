"""JSONata expressions in parameters: values, interpolation, errors, and the safety limits."""

from __future__ import annotations

import copy
import datetime
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from loom import expressions
from loom.expressions import (
    ExpressionContext,
    ExpressionError,
    ExpressionTimeout,
    check_syntax,
    contains_expression,
    evaluate,
    find_expressions,
)

CTX = ExpressionContext(
    input={"name": "Ada", "count": 3, "tags": ["a", "b"], "nothing": None, "ok": True},
    nodes={"fetch": {"status": 200, "body": {"items": [{"id": 1}, {"id": 2}]}}},
    run={"id": "run-1", "workflow_id": "wf-1", "started_at": "2026-01-01T00:00:00Z"},
)


def ev(value: Any, ctx: ExpressionContext = CTX, **kwargs: Any) -> Any:
    return evaluate(value, ctx, where="nodes.n.parameters.p", **kwargs)


def failure(value: Any, ctx: ExpressionContext = CTX, **kwargs: Any) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        ev(value, ctx, **kwargs)
    return info.value


def timed(fn: Callable[[], Any]) -> tuple[BaseException | None, float]:
    start = time.monotonic()
    try:
        fn()
    except BaseException as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2", 3),
        ("1.5 * 2", 3),
        ("7 / 2", 3.5),
        ("'text'", "text"),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 'a', null, [2]]", [1, "a", None, [2]]),
        ("{'a': 1, 'b': {'c': [true]}}", {"a": 1, "b": {"c": [True]}}),
        ("$input.missing", None),
        ("$input.name.missing.deeper", None),
    ],
)
def test_whole_string_expression_keeps_its_json_type(source: str, expected: Any) -> None:
    result = ev("{% " + source + " %}")
    assert result == expected
    assert type(result) is type(expected)


def test_whitespace_around_a_whole_expression_is_allowed() -> None:
    assert ev("  \n{%$input.count%}\t ") == 3


def test_context_variables() -> None:
    assert ev("{% $input.name %}") == "Ada"
    assert ev("{% name %}") == "Ada"  # $ is the input too
    assert ev("{% $nodes.fetch.body.items.id %}") == [1, 2]
    assert ev("{% $nodes.fetch.body.items[1].id %}") == 2
    assert ev("{% $run.workflow_id %}") == "wf-1"
    assert ev("{% $exists($input.nothing) %}") is True  # null is a value, not undefined
    assert ev("{% $input.nothing %}") is None


def test_extra_variables() -> None:
    ctx = ExpressionContext(input={}, nodes={}, run={}, variables={"item": (1, 2), "index": 4})
    assert ev("{% {'item': $item, 'index': $index} %}", ctx) == {"item": [1, 2], "index": 4}
    for name in ["input", "run", "nodes", "__evaluate_entry", "a b", "", "1x"]:
        with pytest.raises(ValueError, match="variable name"):
            ExpressionContext(input={}, nodes={}, run={}, variables={name: 1})
    bad = ExpressionContext(input={}, nodes={}, run={}, variables={"item": {1, 2}})
    assert "a set at $item" in failure("{% $item %}", bad).message


def test_input_that_is_an_array() -> None:
    ctx = ExpressionContext(input=[{"x": 1}, {"x": 2}], nodes={}, run={})
    assert ev("{% $sum($input.x) %}", ctx) == 3
    assert ev("{% $count($) %}", ctx) == 2


def test_interpolation_renders_each_part() -> None:
    text = (
        "name={% $input.name %} n={% $input.count %} tags={% $input.tags %} "
        "obj={% {'k': 1} %} null={% null %} missing=[{% $input.missing %}] ok={% $input.ok %}"
    )
    assert ev(text) == ('name=Ada n=3 tags=["a","b"] obj={"k":1} null=null missing=[] ok=true')


def test_strings_without_expressions_pass_through() -> None:
    for text in ["plain", "{% not closed", "100%} done", "{ % spaced % }", ""]:
        assert ev(text) == text
    assert ev(42) == 42
    assert ev(None) is None


def test_nested_structures_are_evaluated_into_a_new_value() -> None:
    params = {
        "url": "https://x/{% $input.name %}",
        "body": {"count": "{% $input.count * 2 %}", "list": ["{% $run.id %}", 1, "lit"]},
        "flag": True,
    }
    before = copy.deepcopy(params)
    result = ev(params)
    assert result == {
        "url": "https://x/Ada",
        "body": {"count": 6, "list": ["run-1", 1, "lit"]},
        "flag": True,
    }
    assert params == before
    assert result is not params and result["body"] is not params["body"]


def test_the_context_is_never_mutated() -> None:
    data = {"a": None, "b": [None, {"c": None}]}
    ctx = ExpressionContext(input=data, nodes={}, run={})
    before = copy.deepcopy(data)
    out = ev({"x": "{% $input %}", "y": "{% $input.b %}", "z": "{% $exists($input.a) %}"}, ctx)
    assert out == {"x": before, "y": before["b"], "z": True}
    assert data == before
    assert out["x"] is not data


def test_context_values_must_be_json() -> None:
    ctx = ExpressionContext(input={"when": datetime.datetime.now()}, nodes={}, run={})
    error = failure("{% 1 %}", ctx)
    assert "datetime" in error.message and "$input.when" in error.message
    nan = ExpressionContext(input={}, nodes={"n": {"v": float("nan")}}, run={})
    assert "nan" in failure("{% 1 %}", nan).message
    tuples = ExpressionContext(input={"t": (1, 2)}, nodes={}, run={})
    assert ev("{% $input.t %}", tuples) == [1, 2]


# ---------------------------------------------------------------------------- finding


def test_contains_expression() -> None:
    assert contains_expression("{% 1 %}")
    assert contains_expression({"a": [1, {"b": ("x", "a{%$x%}b")}]})
    assert not contains_expression({"{% key %}": "value"})  # keys are never expressions
    assert not contains_expression(["{% open", "close %}", 5, None])
    assert not contains_expression("%} {%")


def test_find_expressions_reports_json_paths() -> None:
    value = {
        "url": "{% $input.url %}",
        "items": ["x", {"deep": "a {% $a %} b {% $b %}"}, "{% $c %}"],
        "odd key": "{% $d %}",
        "n": 3,
    }
    assert find_expressions(value, "parameters") == [
        ("parameters.url", " $input.url "),
        ("parameters.items[1].deep", " $a "),
        ("parameters.items[1].deep", " $b "),
        ("parameters.items[2]", " $c "),
        ('parameters["odd key"]', " $d "),
    ]
    assert find_expressions("{% 1 %}", "") == [("", " 1 ")]
    assert find_expressions({"a": ["{% 1 %}"]}, "") == [("a[0]", " 1 ")]
    assert find_expressions({"a": "no"}, "p") == []


# ---------------------------------------------------------------------------- errors


def test_check_syntax() -> None:
    assert check_syntax("$input.a + 1") is None
    assert check_syntax("$match($, /a+/i)") is None
    reason = check_syntax("1 +")
    assert reason is not None and "S0207" in reason and "\n" not in reason
    assert check_syntax("(") is not None
    assert check_syntax("  ") == "the expression is empty"
    assert "longer than" in (check_syntax("1+" * 6000 + "1") or "")
    assert "backreferences" in (check_syntax("$match('aa', /(a)\\1/)") or "")
    assert "nested too deeply" in (check_syntax("(" * 4_900 + "1" + ")" * 4_900) or "")


def test_syntax_error_names_where_and_quotes_the_expression() -> None:
    error = failure({"a": ["ok", "{% $input.x + %}"]})
    assert error.where == "nodes.n.parameters.p.a[1]"
    assert error.expression == " $input.x + "
    assert "nodes.n.parameters.p.a[1]" in error.message
    assert "{% $input.x + %}" in error.message
    assert "syntax" in error.message and "S0207" in error.message
    assert error.solution
    assert error.code == "expression_error" and error.status == 422
    assert not isinstance(error, ExpressionTimeout)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("$undefinedFunction(1)", "T1006"),
        ("$number('x')", "could not convert"),
        ("$error('custom message')", "custom message"),
        ("1 / 0", "division by zero"),
        ("$input.name + 1", "T2001"),
    ],
)
def test_runtime_errors(source: str, fragment: str) -> None:
    error = failure("{% " + source + " %}")
    assert fragment in error.message
    assert "failed" in error.message and "nodes.n.parameters.p" in error.message
    assert source in error.message


def test_long_expressions_are_truncated_in_messages() -> None:
    source = "$undefinedFunction(" + " + ".join(["1"] * 200) + ")"
    error = failure("{% " + source + " %}")
    quoted = error.message.split("{% ", 1)[1]
    assert len(quoted) < 140 and "…" in quoted
    assert error.expression == " " + source + " "


def test_returning_a_function_is_an_error() -> None:
    assert "function" in failure("{% function($x){ $x } %}").message
    assert "function" in failure("{% $string %}").message


# ---------------------------------------------------------------------------- time and depth


@pytest.mark.parametrize(
    "source",
    [
        "( $f := function($x){ $f($x) }; $f(1) )",  # tail call: loops forever at constant depth
        "$sum([1..100000])",  # one built-in looping in Python for ~0.7 s without calling eval
        "$sort([1..100000], function($a, $b){ $a < $b })",
        "$count([1..300].([1..300].[1..300]))",
        "$eval('( $f := function($x){ $f($x) }; $f(1) )')",
    ],
)
def test_endless_or_huge_work_times_out(source: str) -> None:
    timeout_ms = 150
    error, elapsed = timed(lambda: ev("{% " + source + " %}", timeout_ms=timeout_ms))
    assert isinstance(error, ExpressionTimeout), error
    assert error.code == "expression_timeout"
    assert f"within {timeout_ms} ms" in error.message and source[:20] in error.message
    # Far below what the work takes unbounded (tens of seconds), with room for a busy machine.
    assert elapsed < 20 * timeout_ms / 1000


def test_a_timeout_leaves_nothing_running() -> None:
    before = set(threading.enumerate())
    error, _ = timed(lambda: ev("{% $sum([1..100000]) %}", timeout_ms=100))
    assert isinstance(error, ExpressionTimeout)
    cpu = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - cpu < 0.1  # no thread still evaluating
    names = {t.name for t in set(threading.enumerate()) - before}
    assert names <= {"loom-expression-watchdog"}, names
    assert ev("{% $sum([1..100]) %}") == 5050  # and no stray interrupt is pending


def test_rebinding_the_library_timebox_hooks_changes_nothing() -> None:
    source = (
        "( $__evaluate_entry := $nothing; $__evaluate_exit := $nothing;"
        " $f := function($x){ $f($x) }; $f(1) )"
    )
    error, elapsed = timed(lambda: ev("{% " + source + " %}", timeout_ms=100))
    assert isinstance(error, ExpressionTimeout)
    assert elapsed < 0.3


def test_the_timeout_covers_the_whole_value() -> None:
    slow = "{% $sum([1..20000]) %}"  # about 0.15 s each
    error, elapsed = timed(lambda: ev([slow] * 20, timeout_ms=300))
    assert isinstance(error, ExpressionTimeout)
    assert error.where.startswith("nodes.n.parameters.p[")
    assert elapsed < 0.9


def test_ranges_are_bounded() -> None:
    error, elapsed = timed(lambda: ev("{% $count([1..10000000]) %}"))
    assert isinstance(error, ExpressionError) and not isinstance(error, ExpressionTimeout)
    assert "10000000 entries" in error.message
    error, elapsed2 = timed(lambda: ev("{% [1..100000000] %}"))
    assert isinstance(error, ExpressionError) and "D2014" in error.message
    assert elapsed + elapsed2 < 0.5
    assert ev("{% $count([1..100000]) %}") == 100000


def test_runaway_recursion_is_a_depth_error() -> None:
    source = "( $f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000) )"
    error = failure("{% " + source + " %}")
    assert "deeper than 100 levels" in error.message
    assert ev("{% ( $f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(20) ) %}") == 20


def test_python_recursion_limit_becomes_an_expression_error() -> None:
    source = "( $f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(100000) )"
    error = failure("{% " + source + " %}", max_depth=10_000_000, timeout_ms=5000)
    assert "nested deeper than the Python interpreter allows" in error.message
    nested = "$eval($join([1..5000].('(')) & '1' & $join([1..5000].(')')))"
    assert "D3120" in failure("{% " + nested + " %}", max_depth=10_000_000).message


# ---------------------------------------------------------------------------- size


def test_result_size_is_bounded() -> None:
    assert ev("{% $pad('', 98, 'x') %}", max_result_bytes=100) == "x" * 98  # 100 bytes of JSON
    error = failure("{% $pad('', 99, 'x') %}", max_result_bytes=100)
    assert "above the limit of 100" in error.message
    error = failure("{% $pad('', 99, 'é') %}", max_result_bytes=150)  # 200 bytes as UTF-8
    assert "produced 200 bytes" in error.message
    assert "above the limit" in failure("{% [1..1000] %}", max_result_bytes=1000).message
    assert "above the limit" in failure("x{% $pad('', 50, 'y') %}", max_result_bytes=40).message
    assert "above the limit" in failure("{% 'é' %}", max_result_bytes=3).message  # bytes, not chars


def test_shared_structure_cannot_blow_up_a_result() -> None:
    # 40 doublings of one object: 2**40 leaves in JSON, 40 objects in memory.
    dag = "( $f := function($a, $n){ $n = 0 ? $a : $f({'l': $a, 'r': $a}, $n - 1) }; $f(1, 40) )"
    for source in [dag, f"$string({dag})", f"'' & {dag}", f"{dag} ~> |$|{{}}|"]:
        error, elapsed = timed(lambda s=source: ev("{% " + s + " %}"))  # type: ignore[misc]
        assert isinstance(error, ExpressionError), source
        assert elapsed < 2.0, source
    error, elapsed = timed(lambda: ev("{% " + f"{dag} in [{dag}]" + " %}", timeout_ms=200))
    assert isinstance(error, ExpressionTimeout) and elapsed < 0.6  # Python-level, interruptible


def test_deeply_nested_values_never_reach_c_recursion() -> None:
    # jsonata sets the recursion limit to 10000; serialising a value 1000 levels deep in C
    # crashes a thread with a small stack, so run where that would show.
    deep = "( $f := function($a, $n){ $n = 0 ? $a : $f({'a': $a}, $n - 1) }; $f(1, 1000) )"
    tails = ["", "~> $string", "& ''", "~> |$|{}|"]
    messages: list[str] = []

    def work() -> None:
        for tail in tails:
            try:
                ev("{% " + deep + tail + " %}", timeout_ms=5000)
            except ExpressionError as error:
                messages.append(error.message)

    old = threading.stack_size(64 * 1024)
    try:
        thread = threading.Thread(target=work)
        thread.start()
    finally:
        threading.stack_size(old)
    thread.join(30)
    assert len(messages) == len(tails)
    assert all("nested deeper than 200 levels" in m for m in messages), messages
    assert ev("{% " + deep + " = " + deep + " %}", timeout_ms=5000) is True
    too_deep: Any = 1
    for _ in range(300):
        too_deep = [too_deep]
    ctx = ExpressionContext(input=too_deep, nodes={}, run={})
    assert "deeper than 200" in failure("{% 1 %}", ctx).message


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("( $f := function($s, $n){ $n = 0 ? $s : $f($s & $s, $n - 1) }; $f('x', 40) )", "string"),
        ("$pad('x', 2000000000)", "$pad"),
        ("( $s := $pad('', 1000000, 'x'); $join([1..100].($s)) )", "$join"),
        ("$replace($pad('', 4000000, 'a'), 'a', 'bb')", "$replace"),
        ("$split($pad('', 4000000, 'ab'), 'b')", "split"),
        ("$count([1..100000].[1..100000])", "in total"),
        ("( $b := $pad('', 4000000); $count([1..1000].($b & 'x')) )", "in total"),
    ],
)
def test_memory_amplification_is_refused(source: str, fragment: str) -> None:
    error, elapsed = timed(lambda: ev("{% " + source + " %}", timeout_ms=3000))
    assert isinstance(error, ExpressionError) and not isinstance(error, ExpressionTimeout), error
    assert "too large" in error.message and fragment in error.message
    assert elapsed < 2.0


# ---------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "source",
    [
        "$input.__class__",
        "$input.__class__.__mro__",
        "$lookup($input, '__class__')",
        "$string.__globals__",
        "$string.method",
        "$lookup($string, '__globals__')",
        "$keys($string)",
        "$spread($string)",
        "( $r := /a/; $r.pattern )",
        "$keys(/a/)",
        "$lookup(/a/, 'search')",
        "$__builtins__",
        "$__import__",
        "$os",
        "$eval('$input.__class__')",
        "$each($input, function($v, $k){ $k })[0].__class__",
    ],
)
def test_no_path_reaches_python_objects(source: str) -> None:
    try:
        result = ev("{% " + source + " %}")
    except ExpressionError as error:
        assert "returned a function" in error.message  # $spread($string) gives the function back
    else:
        assert result is None


@pytest.mark.parametrize(
    "source",
    [
        "$eval('__import__(\"os\").environ')",
        "$eval('import os')",
        "$getenv('LOOM_TEST_SECRET')",
        "$environ.LOOM_TEST_SECRET",
        "$exec('1')",
        "$open('/etc/passwd')",
        "$__evaluate_entry('x', 1, 2)",
    ],
)
def test_no_function_reaches_the_process(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOM_TEST_SECRET", "s3cret-value")
    try:
        result = ev("{% " + source + " %}")
    except ExpressionError as error:
        assert "s3cret" not in error.message
    else:
        assert result is None
    assert "s3cret" not in json.dumps(ev("{% [$input, $nodes, $run, $eval('$')] %}"))


def test_functions_stringify_to_nothing() -> None:
    assert ev("{% $string(function($x){ $x }) %}") == ""
    assert ev("{% $string($string) %}") == ""
    assert ev("{% $string({'f': $uppercase, 'n': 1}) %}") == '{"f":"","n":1}'
    assert ev("{% $type($string) %}") == "function"
    assert ev("{% $eval('1 + 1') %}") == 2
    assert ev("{% $eval('$input.name') %}") == "Ada"


def test_regular_expressions_work() -> None:
    assert ev("{% $match('x1 y22', /([a-z])(\\d+)/) %}") == [
        {"match": "x1", "index": 0, "groups": ["x", "1"]},
        {"match": "y22", "index": 3, "groups": ["y", "22"]},
    ]
    assert ev("{% $replace('abcb', /(b)/, '[$1]') %}") == "a[b]c[b]"
    assert ev("{% $replace('a-b-c', /-/, function($m){ '+' & $m.match }) %}") == "a+-b+-c"
    assert ev("{% $split('a1b2c', /\\d/) %}") == ["a", "b", "c"]
    assert ev("{% $contains('Hello', /hello/i) %}") is True
    assert ev("{% $contains('a\nb', /^b$/m) %}") is True
    assert ev("{% $contains('ab', /^b/) %}") is False


@pytest.mark.parametrize(
    "regex",
    ["/(a+)+b/", "/(a|aa)+b/", "/(a*)*b/", "/(.*a){20}b/", "/\\s*\\s*\\s*\\s*b/", "/(a|a)*b/"],
)
def test_catastrophic_regexes_run_in_linear_time(regex: str) -> None:
    # Python's `re` would not finish these in a lifetime (and could not be interrupted).
    source = "$contains($pad('', 2000, 'a') & '!', " + regex + ")"
    error, elapsed = timed(lambda: ev("{% " + source + " %}", timeout_ms=5000))
    assert error is None
    assert elapsed < 2.0


def test_regex_work_on_long_text_is_still_bounded_by_the_timeout() -> None:
    source = "$count($match($pad('', 200000, 'a'), /a*a*a*a*b/))"
    error, elapsed = timed(lambda: ev("{% " + source + " %}", timeout_ms=150))
    assert isinstance(error, ExpressionTimeout)
    assert elapsed < 0.45


@pytest.mark.parametrize(
    ("regex", "fragment"),
    [
        ("/(a)\\1/", "backreferences"),
        ("/(?=a)/", "lookahead"),
        ("/(?<=a)b/", "lookahead or lookbehind"),
        ("/a++/", "possessive"),
        ("/a{5000}/", "repeat counts"),
    ],
)
def test_backtracking_only_regex_features_are_refused(regex: str, fragment: str) -> None:
    error = failure("{% $contains('a', " + regex + ") %}")
    assert "syntax error" in error.message and fragment in error.message


def test_library_functions_that_build_python_regexes_are_restricted() -> None:
    picture = "$toMillis('" + "a" * 40 + "!', '(a+)+b[Y]')"
    error, elapsed = timed(lambda: ev("{% " + picture + " %}"))
    assert isinstance(error, ExpressionError) and "picture" in error.message
    assert elapsed < 0.5
    assert ev("{% $toMillis('2020-01-01T00:00:00Z') %}") == 1577836800000
    injected = "$formatNumber(1, '#', {'grouping-separator': 'x](a+)+$[y'})"
    assert "one character" in failure("{% " + injected + " %}").message
    assert ev("{% $formatNumber(1234.5, '#,##0.00') %}") == "1,234.50"


def test_comparisons_use_jsonata_equality() -> None:
    assert ev("{% true in [1] %}") is False
    assert ev("{% [1] in [[1], 2] %}") is True
    assert ev("{% $distinct([1, true, 1.0, 'a', 'a', [1], [1], {'a': 1}, {'a': 1}]) %}") == [
        1,
        True,
        "a",
        [1],
        {"a": 1},
    ]


# ---------------------------------------------------------------------------- engine plumbing


def test_compiled_expressions_are_cached() -> None:
    source = "$input.count * 41 + 12345"
    before = expressions._compile.cache_info()
    assert ev("{% " + source + " %}") == 12468
    assert ev("{% " + source + " %}") == 12468
    after = expressions._compile.cache_info()
    assert after.hits >= before.hits + 1
    assert after.maxsize is not None and after.maxsize <= 10_000


def test_concurrent_evaluations_are_independent() -> None:
    results: dict[int, Any] = {}

    def work(n: int) -> None:
        ctx = ExpressionContext(input={"n": n}, nodes={}, run={})
        try:
            if n == 0:
                ev("{% ( $f := function($x){ $f($x) }; $f(1) ) %}", ctx, timeout_ms=300)
            results[n] = [ev("{% $input.n * 2 %}", ctx) for _ in range(50)]
        except ExpressionError as exc:
            results[n] = type(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results[0] is ExpressionTimeout
    for n in range(1, 6):
        assert results[n] == [n * 2] * 50


def test_now_is_fixed_within_one_expression() -> None:
    first, second = ev("{% [$now(), $now()] %}")
    assert first == second and first.startswith("20")
    assert isinstance(ev("{% $millis() %}"), int)


def test_limits_are_configurable_per_call() -> None:
    deep = "( $f := function($n){ $n = 0 ? 0 : 1 + $f($n - 1) }; $f(50) )"
    assert ev("{% " + deep + " %}", max_depth=1000) == 50
    assert "deeper than 100" in failure("{% " + deep + " %}").message


def test_public_api_is_exported() -> None:
    assert set(expressions.__all__) == {
        "ExpressionContext",
        "ExpressionError",
        "ExpressionTimeout",
        "check_syntax",
        "contains_expression",
        "evaluate",
        "find_expressions",
    }
    assert issubclass(ExpressionTimeout, ExpressionError)
    assert os.environ.get("LOOM_TEST_SECRET") is None
