"""JSONata expressions inside workflow parameters: find them, check them, evaluate them safely.

A parameter string may hold JSONata between ``{%`` and ``%}`` (the delimiters AWS Step
Functions uses). A string that is exactly one expression becomes the expression's JSON value;
a string mixing text and expressions becomes a string. Expressions see ``$input`` (also bound
to ``$``), ``$nodes``, ``$run`` and any ``ExpressionContext.variables``.

Workflow authors write these expressions, so they are treated as untrusted, and the engine
(jsonata-python 0.7) needs help to make that safe:

* Data only. The context is copied into plain JSON before binding, results are copied back
  into plain JSON (a function value is an error), and no Python function is exposed: the only
  natives are the library's built-ins, a few of them behind the checks below. JSONata paths
  only index dicts and lists, so nothing reaches attributes, modules or the environment.
* Time. jsonata-python's own ``Timebox`` (``Jsonata(expr, timeout=..., stack=...)``) cannot be
  used: it starts its clock when the expression is *compiled*, keeps its depth counter on the
  shared compiled object, and hooks in through the frame variables ``__evaluate_entry`` /
  ``__evaluate_exit``, which an expression can rebind (``$__evaluate_entry := $undefined``
  turns the box off). Instead each thread evaluates on its own ``_Engine`` whose ``eval``
  method (the same entry/exit points the Timebox uses) checks a per-call deadline, the depth
  and the size of what each step returns.
  Built-ins that loop in Python without calling ``eval`` (``$sum`` over a big range spends
  seconds validating its argument) are stopped by a watchdog thread that raises an
  asynchronous exception in the evaluating thread at the deadline. Evaluation runs in the
  caller's thread, so nothing keeps running after a timeout; the watchdog only sleeps.
* Memory. Arrays (ranges included) and objects are capped at ``_MAX_ITEMS`` entries and
  strings at ``_MAX_STRING_CHARS``, with running totals per expression; the built-ins that
  can multiply memory in one C call (``$pad``, ``$join``, ``$split``, ``$replace``,
  ``$string``, ``$clone``, ``&``, transforms) check sizes first, counting shared parts as
  often as JSON would repeat them, and refuse values nested deeper than ``_MAX_NESTING``
  (the C JSON encoder recurses on the C stack).
* Regular expressions. The library compiles them with Python ``re``, which backtracks in C
  where no timeout can reach it (``/(a+)+b/`` hangs a thread). They are compiled here into a
  small Pike VM instead: linear time, interruptible, without backreferences or lookaround.
  ``$toMillis`` with a picture builds an ``re`` pattern from user text, so that form is
  refused, and ``$formatNumber`` options, which it pastes into ``re`` patterns, must be
  single characters.
* Comparisons of arrays and objects (``in``, ``$distinct``) use Python-level deep equality
  instead of C ``==``, which cannot be interrupted on values that share structure.

The guarded built-ins are the library's own functions behind a size or shape check; the
limits apply per ``evaluate`` call: one deadline for all expressions in the value, the depth
and result-size limits for each expression.
"""

from __future__ import annotations

import copy
import ctypes
import heapq
import importlib
import inspect
import itertools
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from jsonata import functions as jfunctions
from jsonata import jsonata as jjsonata
from jsonata import utils as jutils
from jsonata.jexception import JException
from jsonata.regex_engine import RegexFlags

from loom.errors import LoomError

__all__ = [
    "ExpressionContext",
    "ExpressionError",
    "ExpressionTimeout",
    "check_syntax",
    "contains_expression",
    "evaluate",
    "find_expressions",
]

_OPEN = "{%"
_CLOSE = "%}"

_MAX_SOURCE_CHARS = 10_000  # one expression's source
_CACHE_SIZE = 512  # compiled expressions kept (LRU)
_MAX_ITEMS = 100_000  # entries in any array (ranges included) or object built while evaluating
_MAX_STRING_CHARS = 5_000_000  # characters in any string built while evaluating
_MAX_TOTAL_ITEMS = 2_000_000  # array entries all eval steps of one expression may return
_MAX_TOTAL_CHARS = 25_000_000  # characters all string-building steps of one expression return
# Nesting of the context, of results and of anything serialised: the C JSON encoder recurses
# on the C stack (jsonata raises the recursion limit to 10000), and a value 9000 levels deep
# crashes the process in a thread with a 256 KiB stack.
_MAX_NESTING = 200
_QUOTE_CHARS = 120  # how much of an expression error messages quote
_REGEX_MAX_SOURCE = 1_000
_REGEX_MAX_PROGRAM = 10_000  # Pike VM instructions, after expanding {m,n}
_REGEX_MAX_REPEAT = 1_000  # bound of a {m,n} counter
_WATCHDOG_IDLE_SECONDS = 30.0  # the watchdog thread exits after this long without work

_Json = Any
_Null = jutils.Utils.NULL_VALUE
_RangeList = jutils.Utils.RangeList


# --------------------------------------------------------------------------------------------
# Public types
# --------------------------------------------------------------------------------------------


class ExpressionError(LoomError):
    """An expression that does not parse, fails, or exceeds a limit."""

    code = "expression_error"
    status = 422

    def __init__(
        self,
        message: str,
        *,
        where: str,
        expression: str,
        solution: str = "",
        details: Any = None,
    ) -> None:
        if details is None:
            details = {"where": where, "expression": _quote(expression)}
        super().__init__(message, solution=solution, details=details)
        self.where = where
        self.expression = expression


class ExpressionTimeout(ExpressionError):
    """An expression that ran past its time limit."""

    code = "expression_timeout"


_RESERVED_VARIABLES = frozenset({"input", "nodes", "run"})
_VARIABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class ExpressionContext:
    """What an expression can read: ``$input`` (and ``$``), ``$nodes`` and ``$run``.

    ``variables`` binds more names for one evaluation, e.g. ``{"item": x}`` as ``$item``.
    """

    input: Any
    nodes: Mapping[str, Any]
    run: Mapping[str, Any]
    variables: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.variables:
            if name in _RESERVED_VARIABLES or not _VARIABLE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} cannot be an expression variable name")


# --------------------------------------------------------------------------------------------
# Finding expressions
# --------------------------------------------------------------------------------------------


def _split_template(text: str) -> list[tuple[bool, str]] | None:
    """``[(is_expression, text), ...]`` for a string, or None when it holds no expression.

    An opening ``{%`` without a closing ``%}`` is plain text. Built on ``str.find`` so that
    hostile parameter strings cannot make the scan quadratic.
    """
    parts: list[tuple[bool, str]] = []
    pos = 0
    while True:
        start = text.find(_OPEN, pos)
        if start < 0:
            break
        end = text.find(_CLOSE, start + len(_OPEN))
        if end < 0:
            break
        if start > pos:
            parts.append((False, text[pos:start]))
        parts.append((True, text[start + len(_OPEN) : end]))
        pos = end + len(_CLOSE)
    if not parts:
        return None
    if pos < len(text):
        parts.append((False, text[pos:]))
    return parts


def _is_whole(parts: list[tuple[bool, str]]) -> bool:
    """True when the template is one expression with only whitespace around it."""
    expressions = [p for p in parts if p[0]]
    return len(expressions) == 1 and all(p[0] or not p[1].strip() for p in parts)


def contains_expression(value: Any) -> bool:
    """Whether any string inside ``value`` (dict values and list items, nested) holds ``{% %}``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            start = item.find(_OPEN)
            if start >= 0 and item.find(_CLOSE, start + len(_OPEN)) >= 0:
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _child_path(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def find_expressions(value: Any, path: str) -> list[tuple[str, str]]:
    """``(path, source)`` for every expression inside ``value``, in document order.

    Paths extend ``path`` like ``parameters.url`` or ``parameters.items[2]``; keys that are
    not identifiers are quoted (``parameters["a b"]``). Dict keys are never expressions.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, str):
            parts = _split_template(item)
            if parts:
                found.extend((here, text) for is_expr, text in parts if is_expr)
        elif isinstance(item, Mapping):
            children = [(_child_path(here, str(k)), v) for k, v in item.items()]
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(_child_path(here, i), v) for i, v in enumerate(item)]))
    return found


# --------------------------------------------------------------------------------------------
# Limits: a per-evaluation guard, and a watchdog for code that never calls eval
# --------------------------------------------------------------------------------------------


class _Abort(BaseException):
    """A limit was hit. BaseException so that jsonata's ``except Exception`` cannot swallow it."""


class _Deadline(_Abort):
    pass


class _TooDeep(_Abort):
    pass


_PYTHON_STACK = "the Python interpreter allows"  # a RecursionError, not max_depth


class _TooBig(_Abort):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Guard:
    """Limits of one ``evaluate`` call, checked on every JSONata eval step.

    Besides time and depth it keeps running totals of the array entries and string
    characters that eval steps produce, per expression: a step that returns a big array (a
    range, a path over big data) over and over, like ``[1..100000].[1..100000]``, is how an
    expression fills memory faster than time runs out, because jsonata flattens the results
    with C calls between eval steps.
    """

    __slots__ = ("chars", "deadline", "depth", "items", "max_depth")

    def __init__(self, deadline: float, max_depth: int) -> None:
        self.deadline = deadline
        self.max_depth = max_depth
        self.start_expression()

    def start_expression(self) -> None:
        self.depth = 0
        self.items = 0
        self.chars = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Deadline

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise _TooDeep
        self.check_time()

    def check_result(self, kind: str, result: Any) -> None:
        self.check_time()
        if isinstance(result, str):
            if len(result) > _MAX_STRING_CHARS:
                raise _TooBig(f"a string of {len(result)} characters (limit {_MAX_STRING_CHARS})")
            if kind in _NEW_STRING_STEPS:
                self.chars += len(result)
                if self.chars > _MAX_TOTAL_CHARS:
                    raise _TooBig(f"more than {_MAX_TOTAL_CHARS} string characters in total")
        elif isinstance(result, list | dict):
            # RangeList.__len__ counts one item too many in jsonata-python 0.7
            size = result.b - result.a if isinstance(result, _RangeList) else len(result)
            if size > _MAX_ITEMS:
                what = "an array" if isinstance(result, list) else "an object"
                raise _TooBig(f"{what} of {size} entries (limit {_MAX_ITEMS})")
            if kind not in _LOOKUP_STEPS:
                self.items += size
                if self.items > _MAX_TOTAL_ITEMS:
                    raise _TooBig(f"more than {_MAX_TOTAL_ITEMS} array entries in total")


# Eval steps that hand back a value that already exists, and those that build new strings.
_LOOKUP_STEPS = frozenset({"variable", "name", "block", "condition", "parent", "bind"})
_NEW_STRING_STEPS = frozenset({"function", "binary", "apply", "partial", "transform"})


class _State(threading.local):
    guard: _Guard | None = None
    engine: _Engine | None = None


_STATE = _State()


def _current_guard() -> _Guard:
    guard = _STATE.guard
    if guard is None:  # only reachable if the private engine were used outside evaluate()
        raise _Deadline
    return guard


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``thread_id`` at its next bytecode boundary (None cancels)."""
    target = ctypes.py_object(exc) if exc is not None else None
    set_async = ctypes.pythonapi.PyThreadState_SetAsyncExc
    if set_async(ctypes.c_ulong(thread_id), target) > 1:  # pragma: no cover - CPython bug guard
        set_async(ctypes.c_ulong(thread_id), None)


class _Ticket:
    __slots__ = ("active", "deadline", "fired", "thread_id")

    def __init__(self, thread_id: int, deadline: float) -> None:
        self.thread_id = thread_id
        self.deadline = deadline
        self.active = True
        self.fired = False


class _Watchdog:
    """One sleeping daemon thread that interrupts evaluations still running at their deadline.

    Needed because built-ins can loop for seconds in Python without calling eval. The
    interrupt is ``PyThreadState_SetAsyncExc``: it lands at the next bytecode boundary, so a
    single long C call (which the size limits keep short) finishes first. Arming, firing and
    disarming share one lock; disarming clears an interrupt that fired but has not landed, so
    none can escape into the caller's code.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, _Ticket]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float) -> _Ticket:
        ticket = _Ticket(threading.get_ident(), deadline)
        with self._lock:
            heapq.heappush(self._heap, (deadline, next(self._seq), ticket))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="loom-expression-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return ticket

    def disarm(self, ticket: _Ticket) -> None:
        with self._lock:  # a C-level lock: no bytecode boundary between acquire and body
            ticket.active = False
            if ticket.fired:
                _set_async_exc(ticket.thread_id, None)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and not self._heap[0][2].active:
                    heapq.heappop(self._heap)
                if not self._heap:
                    if not self._cond.wait(_WATCHDOG_IDLE_SECONDS) and not self._heap:
                        self._thread = None
                        return
                    continue
                deadline, _, ticket = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                ticket.fired = True
                _set_async_exc(ticket.thread_id, _Deadline)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._heap = []
        self._thread = None


_WATCHDOG: _Watchdog | None = _Watchdog() if hasattr(ctypes, "pythonapi") else None
if _WATCHDOG is not None and hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WATCHDOG.reset_after_fork)


# --------------------------------------------------------------------------------------------
# Regular expressions: a Pike VM (linear time, interruptible) fed by Python's own regex parser
# --------------------------------------------------------------------------------------------

_sre: Any = importlib.import_module("re._constants")
_sre_parse: Any = importlib.import_module("re._parser")

_OP_CHAR, _OP_SPLIT, _OP_JMP, _OP_SAVE, _OP_ASSERT, _OP_MATCH = range(6)
_AT_BOS, _AT_EOS, _AT_BOL, _AT_EOL_STRING, _AT_EOL, _AT_WORD, _AT_NOT_WORD = range(7)

_Pred = Callable[[str], bool]


class _Refused(ValueError):
    """Something this module will not compile or run (the message says what)."""


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


_CATEGORIES: dict[Any, _Pred] = {
    _sre.CATEGORY_DIGIT: str.isdecimal,
    _sre.CATEGORY_NOT_DIGIT: lambda c: not c.isdecimal(),
    _sre.CATEGORY_SPACE: str.isspace,
    _sre.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    _sre.CATEGORY_WORD: _is_word,
    _sre.CATEGORY_NOT_WORD: lambda c: not _is_word(c),
}

_UNSUPPORTED = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookahead or lookbehind",
    "ASSERT_NOT": "lookahead or lookbehind",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
    "ATOMIC_GROUP": "atomic groups",
}


def _case_variants(c: str) -> set[str]:
    return {v for v in (c, c.lower(), c.upper()) if len(v) == 1}


def _literal_pred(code: int, icase: bool) -> _Pred:
    ch = chr(code)
    if not icase:
        return lambda c: c == ch
    variants = _case_variants(ch)
    return lambda c: c in variants or c.lower() in variants or c.upper() in variants


def _class_pred(items: list[tuple[Any, Any]], icase: bool) -> _Pred:
    negate = False
    chars: set[str] = set()
    ranges: list[tuple[int, int]] = []
    categories: list[_Pred] = []
    for op, av in items:
        if op is _sre.NEGATE:
            negate = True
        elif op is _sre.LITERAL:
            chars.add(chr(av))
        elif op is _sre.RANGE:
            ranges.append((av[0], av[1]))
        elif op is _sre.CATEGORY and av in _CATEGORIES:
            categories.append(_CATEGORIES[av])
        else:
            raise _Refused(f"unsupported character class item {op}")
    test = _members_pred(chars, ranges, categories)
    matches = test
    if icase:

        def matches(c: str) -> bool:
            return test(c) or any(test(v) for v in _case_variants(c))

    if negate:
        return lambda c: not matches(c)
    return matches


def _members_pred(chars: set[str], ranges: list[tuple[int, int]], categories: list[_Pred]) -> _Pred:
    # Small ranges become set members so that most classes test with one `in`.
    if sum(hi - lo + 1 for lo, hi in ranges) <= 4096:
        chars = chars | {chr(o) for lo, hi in ranges for o in range(lo, hi + 1)}
        ranges = []
    if not ranges and not categories:
        return chars.__contains__
    if not ranges and not chars and len(categories) == 1:
        return categories[0]

    def test(c: str) -> bool:
        if c in chars:
            return True
        o = ord(c)
        return any(lo <= o <= hi for lo, hi in ranges) or any(f(c) for f in categories)

    return test


class _RegexCompiler:
    def __init__(self) -> None:
        self.prog: list[list[Any]] = []

    def emit(self, op: int, a: Any = None, b: Any = None) -> int:
        if len(self.prog) >= _REGEX_MAX_PROGRAM:
            raise _Refused("the regular expression is too large")
        self.prog.append([op, a, b])
        return len(self.prog) - 1

    def sequence(self, items: Any, flags: int) -> None:
        for op, av in items:
            self.node(op, av, flags)

    def node(self, op: Any, av: Any, flags: int) -> None:
        icase = bool(flags & re.IGNORECASE)
        if op is _sre.LITERAL:
            self.emit(_OP_CHAR, _literal_pred(av, icase))
        elif op is _sre.NOT_LITERAL:
            pred = _literal_pred(av, icase)
            self.emit(_OP_CHAR, lambda c: not pred(c))
        elif op is _sre.ANY:
            self.emit(_OP_CHAR, (lambda c: True) if flags & re.DOTALL else (lambda c: c != "\n"))
        elif op is _sre.IN:
            self.emit(_OP_CHAR, _class_pred(av, icase))
        elif op is _sre.AT:
            self.emit(_OP_ASSERT, self.anchor(av, flags))
        elif op is _sre.BRANCH:
            self.branch(av[1], flags)
        elif op is _sre.SUBPATTERN:
            group, add_flags, del_flags, body = av
            if (add_flags | del_flags) & ~(re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE):
                raise _Refused("inline flags other than i, m, s and x are not supported")
            if group:
                self.emit(_OP_SAVE, 2 * group)
            self.sequence(body, (flags | add_flags) & ~del_flags)
            if group:
                self.emit(_OP_SAVE, 2 * group + 1)
        elif op is _sre.MAX_REPEAT or op is _sre.MIN_REPEAT:
            self.repeat(av, flags, greedy=op is _sre.MAX_REPEAT)
        else:
            what = _UNSUPPORTED.get(str(op), str(op))
            raise _Refused(f"{what} are not supported in regular expressions")

    @staticmethod
    def anchor(at: Any, flags: int) -> int:
        multiline = bool(flags & re.MULTILINE)
        if at is _sre.AT_BEGINNING:
            return _AT_BOL if multiline else _AT_BOS
        if at is _sre.AT_END:
            return _AT_EOL if multiline else _AT_EOL_STRING
        kinds = {
            _sre.AT_BEGINNING_STRING: _AT_BOS,
            _sre.AT_END_STRING: _AT_EOS,
            _sre.AT_BEGINNING_LINE: _AT_BOL,
            _sre.AT_END_LINE: _AT_EOL,
            _sre.AT_BOUNDARY: _AT_WORD,
            _sre.AT_NON_BOUNDARY: _AT_NOT_WORD,
        }
        if at not in kinds:
            raise _Refused(f"unsupported anchor {at}")
        return kinds[at]

    def branch(self, alternatives: list[Any], flags: int) -> None:
        jumps = []
        for alt in alternatives[:-1]:
            split = self.emit(_OP_SPLIT, len(self.prog) + 1)
            self.sequence(alt, flags)
            jumps.append(self.emit(_OP_JMP))
            self.prog[split][2] = len(self.prog)
        self.sequence(alternatives[-1], flags)
        for jump in jumps:
            self.prog[jump][1] = len(self.prog)

    def repeat(self, av: Any, flags: int, *, greedy: bool) -> None:
        low, high, body = av
        unbounded = high == _sre.MAXREPEAT
        if low > _REGEX_MAX_REPEAT or (not unbounded and high > _REGEX_MAX_REPEAT):
            raise _Refused(f"repeat counts above {_REGEX_MAX_REPEAT} are not supported")
        for _ in range(low):
            self.sequence(body, flags)
        splits: list[tuple[int, int]] = []
        if unbounded:
            loop = self.emit(_OP_SPLIT)
            self.sequence(body, flags)
            self.emit(_OP_JMP, loop)
            splits.append((loop, loop + 1))
        else:
            for _ in range(high - low):
                split = self.emit(_OP_SPLIT)
                self.sequence(body, flags)
                splits.append((split, split + 1))
        end = len(self.prog)
        for split, body_start in splits:
            self.prog[split][1:] = [body_start, end] if greedy else [end, body_start]


def _assert_ok(kind: int, s: str, i: int, n: int) -> bool:
    if kind == _AT_BOS:
        return i == 0
    if kind == _AT_EOS:
        return i == n
    if kind == _AT_BOL:
        return i == 0 or s[i - 1] == "\n"
    if kind == _AT_EOL_STRING:
        return i == n or (i == n - 1 and s[i] == "\n")
    if kind == _AT_EOL:
        return i == n or s[i] == "\n"
    before = i > 0 and _is_word(s[i - 1])
    after = i < n and _is_word(s[i])
    return (before != after) if kind == _AT_WORD else (before == after)


def _add_thread(
    prog: list[list[Any]],
    threads: list[tuple[int, tuple[int, ...]]],
    seen: set[int],
    pc: int,
    caps: tuple[int, ...],
    s: str,
    i: int,
) -> None:
    """Follow jumps, splits, saves and anchors from ``pc``, in priority order."""
    first_op = prog[pc][0]
    if first_op in (_OP_CHAR, _OP_MATCH):  # the common case, without a stack
        if pc not in seen:
            seen.add(pc)
            threads.append((pc, caps))
        return
    stack = [(pc, caps)]
    n = len(s)
    while stack:
        pc, caps = stack.pop()
        if pc in seen:
            continue
        seen.add(pc)
        op, a, b = prog[pc]
        if op == _OP_JMP:
            stack.append((a, caps))
        elif op == _OP_SPLIT:
            stack.append((b, caps))
            stack.append((a, caps))
        elif op == _OP_SAVE:
            stack.append((pc + 1, (*caps[:a], i, *caps[a + 1 :])))
        elif op == _OP_ASSERT:
            if _assert_ok(a, s, i, n):
                stack.append((pc + 1, caps))
        else:
            threads.append((pc, caps))


class _SafeMatch:
    """The part of ``re.Match`` that jsonata-python uses."""

    def __init__(self, pattern: _SafePattern, string: str, caps: tuple[int, ...]) -> None:
        self.re = pattern
        self.string = string
        self._caps = caps

    def _index(self, group: int | str) -> int:
        index = self.re.groupindex[group] if isinstance(group, str) else group
        if not 0 <= index <= self.re.groups:
            raise IndexError("no such group")
        return index

    def span(self, group: int | str = 0) -> tuple[int, int]:
        index = self._index(group)
        start, end = self._caps[2 * index], self._caps[2 * index + 1]
        return (start, end) if start >= 0 and end >= 0 else (-1, -1)

    def start(self, group: int | str = 0) -> int:
        return self.span(group)[0]

    def end(self, group: int | str = 0) -> int:
        return self.span(group)[1]

    def _group(self, group: int | str) -> str | None:
        start, end = self.span(group)
        return None if start < 0 else self.string[start:end]

    def group(self, *groups: int | str) -> Any:
        if not groups:
            return self._group(0)
        if len(groups) == 1:
            return self._group(groups[0])
        return tuple(self._group(g) for g in groups)

    def __getitem__(self, group: int | str) -> str | None:
        return self._group(group)

    def groups(self, default: Any = None) -> tuple[Any, ...]:
        values = (self._group(g) for g in range(1, self.re.groups + 1))
        return tuple(default if v is None else v for v in values)

    def groupdict(self, default: Any = None) -> dict[str, Any]:
        values = {name: self._group(index) for name, index in self.re.groupindex.items()}
        return {k: default if v is None else v for k, v in values.items()}

    def expand(self, template: str) -> str:
        return _expand_template(template, self)


_TEMPLATE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "f": "\f",
    "v": "\v",
    "a": "\a",
    "b": "\b",
    "\\": "\\",
}


def _template_group(template: str, pos: int, ref: str, match: _SafeMatch) -> str:
    if ref.isdigit():
        index = int(ref)
    elif ref in match.re.groupindex:
        index = match.re.groupindex[ref]
    else:
        raise re.error(f"unknown group name '{ref}'", template, pos)
    if index > match.re.groups:
        # jsonata-python parses this exact wording to retry with a shorter group number
        raise re.error(f"invalid group reference {index}", template, pos)
    return match._group(index) or ""


def _expand_template(template: str, match: _SafeMatch) -> str:
    """Python ``re`` replacement-template semantics (``\\g<1>``, ``\\1``, ``\\n``...)."""
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        slash = template.find("\\", i)
        if slash < 0:
            out.append(template[i:])
            break
        out.append(template[i:slash])
        if slash + 1 >= n:
            raise re.error("bad escape (end of pattern)", template, slash)
        c = template[slash + 1]
        if c == "g":
            close = template.find(">", slash + 3)
            if template[slash + 2 : slash + 3] != "<" or close < 0:
                raise re.error("missing group name", template, slash + 2)
            out.append(_template_group(template, slash + 3, template[slash + 3 : close], match))
            i = close + 1
        elif c == "0":
            j = slash + 2
            while j < min(n, slash + 4) and template[j] in "01234567":
                j += 1
            out.append(chr(int(template[slash + 1 : j], 8)))
            i = j
        elif c.isdigit():
            j = slash + 2 if slash + 2 < n and template[slash + 2].isdigit() else slash + 1
            out.append(_template_group(template, slash + 1, template[slash + 1 : j + 1], match))
            i = j + 1
        elif c in _TEMPLATE_ESCAPES:
            out.append(_TEMPLATE_ESCAPES[c])
            i = slash + 2
        elif c.isascii() and c.isalpha():
            raise re.error(f"bad escape \\{c}", template, slash)
        else:
            out.append(template[slash : slash + 2])
            i = slash + 2
    return "".join(out)


class _SafePattern:
    """A compiled regex with the ``re.Pattern`` methods jsonata-python calls."""

    def __init__(self, source: str, flags: int) -> None:
        try:
            tree = _sre_parse.parse(source, flags)
        except re.error as exc:
            raise _Refused(f"invalid regular expression: {exc}") from None
        all_flags = tree.state.flags
        if all_flags & (re.ASCII | re.LOCALE):
            raise _Refused("the a and L regex flags are not supported")
        compiler = _RegexCompiler()
        compiler.emit(_OP_SAVE, 0)
        compiler.sequence(tree, all_flags)
        compiler.emit(_OP_SAVE, 1)
        compiler.emit(_OP_MATCH)
        self.pattern = source
        self.flags = all_flags
        self.groups: int = tree.state.groups - 1
        self.groupindex: dict[str, int] = dict(tree.state.groupdict)
        self._prog = compiler.prog
        first = list(tree)[:1]
        literal_start = bool(first) and first[0][0] is _sre.LITERAL
        self._first = chr(first[0][1]) if literal_start and not all_flags & re.IGNORECASE else None

    def _run(self, s: str, pos: int, must_advance: bool) -> tuple[int, ...] | None:
        """Leftmost-first match at or after ``pos`` (Python's rules for empty matches)."""
        prog, n = self._prog, len(s)
        guard = _STATE.guard
        start_caps = (-1,) * (2 * self.groups + 2)
        matched: tuple[int, ...] | None = None
        threads: list[tuple[int, tuple[int, ...]]] = []
        seen: set[int] = set()
        i, steps = pos, 0
        while True:
            if matched is None:
                if not threads and self._first is not None:
                    i = s.find(self._first, i)
                    if i < 0:
                        return None
                    seen = set()
                _add_thread(prog, threads, seen, 0, start_caps, s, i)
            if not threads and (matched is not None or i >= n):
                return matched
            c = s[i] if i < n else ""
            next_threads: list[tuple[int, tuple[int, ...]]] = []
            next_seen: set[int] = set()
            for pc, caps in threads:
                op, pred, _ = prog[pc]
                if op == _OP_MATCH:
                    if must_advance and i == pos:
                        continue  # no empty match where the previous match ended
                    matched = caps
                    break
                if i < n and pred(c):
                    _add_thread(prog, next_threads, next_seen, pc + 1, caps, s, i + 1)
            steps += len(threads) + 1
            if steps > 4096 and guard is not None:
                steps = 0
                guard.check_time()
            if i >= n:
                return matched
            threads, seen = next_threads, next_seen
            i += 1

    def search(self, string: str, pos: int = 0) -> _SafeMatch | None:
        caps = self._run(string, min(max(pos, 0), len(string)), False)
        return None if caps is None else _SafeMatch(self, string, caps)

    def finditer(self, string: str) -> Iterator[_SafeMatch]:
        pos, must_advance = 0, False
        while pos <= len(string):
            caps = self._run(string, pos, must_advance)
            if caps is None:
                return
            yield _SafeMatch(self, string, caps)
            must_advance = caps[0] == caps[1]
            pos = caps[1]

    def sub(self, repl: Any, string: str, count: int = 0) -> str:
        parts: list[str] = []
        size, last = 0, 0
        for done, match in enumerate(self.finditer(string), start=1):
            piece = repl(match) if callable(repl) else _expand_template(repl, match)
            if not isinstance(piece, str):
                raise TypeError("a replacement must be a string")
            parts += (string[last : match.start()], piece)
            size += match.start() - last + len(piece)
            if size > _MAX_STRING_CHARS:
                raise _TooBig(f"a replacement result above {_MAX_STRING_CHARS} characters")
            last = match.end()
            if count and done >= count:
                break
        parts.append(string[last:])
        return "".join(parts)

    def split(self, string: str, maxsplit: int = 0) -> list[str | None]:
        out: list[str | None] = []
        last = 0
        for done, match in enumerate(self.finditer(string), start=1):
            out.append(string[last : match.start()])
            out.extend(match.groups())
            last = match.end()
            if maxsplit and done >= maxsplit:
                break
            if len(out) > _MAX_ITEMS:
                raise _TooBig(f"a split into more than {_MAX_ITEMS} parts")
        out.append(string[last:])
        return out


def _compile_regex(pattern: str, flags: RegexFlags) -> _SafePattern:
    """The ``regex_engine`` handed to jsonata-python for every regex literal."""
    if len(pattern) > _REGEX_MAX_SOURCE:
        raise _Refused(f"regular expressions are limited to {_REGEX_MAX_SOURCE} characters")
    py_flags = (re.IGNORECASE if flags.case_insensitive else 0) | (
        re.MULTILINE if flags.multiline else 0
    )
    return _SafePattern(pattern, py_flags)


# --------------------------------------------------------------------------------------------
# The engine: jsonata-python with guarded eval and guarded built-ins
# --------------------------------------------------------------------------------------------


def _leaf_size(item: Any) -> int:
    if isinstance(item, str):
        return len(item) + 2
    if isinstance(item, int | float) and not isinstance(item, bool):
        return len(repr(item))
    return 5


def _check_json_size(value: Any, limit: int = _MAX_STRING_CHARS) -> None:
    """Refuse to serialise ``value`` if its JSON would exceed about ``limit`` characters.

    Arrays and objects can share parts, so the JSON of a small value can be huge: sizes are
    computed once per container (by identity) and summed with repetition, which takes time
    proportional to the value's size in memory, not to its JSON.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    pending: set[int] = set()
    stack: list[Any] = [value]
    while stack:
        item = stack[-1]
        if not isinstance(item, dict | list) or id(item) in sizes:
            stack.pop()
            continue
        children = list(item.values()) if isinstance(item, dict) else item
        if id(item) not in pending:  # first visit: size the children first
            pending.add(id(item))
            for child in children:
                if isinstance(child, dict | list) and id(child) not in sizes:
                    if id(child) in pending:
                        raise _TooBig("a value that contains itself")
                    stack.append(child)
            continue
        stack.pop()
        size = 1 + max(1, len(children))  # brackets and commas; never above the real size
        depth = 1
        if isinstance(item, dict):
            size += sum(len(str(key)) + 3 for key in item)
        for child in children:
            if isinstance(child, dict | list):
                size += sizes[id(child)]
                depth = max(depth, depths[id(child)] + 1)
            else:
                size += _leaf_size(child)
            if size > limit:
                raise _TooBig(f"a JSON text of more than {limit} characters")
        if depth > _MAX_NESTING:
            raise _TooBig(f"a value nested deeper than {_MAX_NESTING} levels")
        sizes[id(item)] = size
        depths[id(item)] = depth


def _lib(name: str) -> Any:
    return getattr(jfunctions.Functions, name)


class _GuardedFunctions:
    """Built-ins replaced by a check followed by the library's own implementation."""

    @staticmethod
    def pad(string: Any, width: Any, char: Any) -> Any:
        number = isinstance(width, int | float) and not isinstance(width, bool)
        if number and math.isfinite(width) and abs(width) > _MAX_STRING_CHARS:
            raise _TooBig(f"$pad to {int(abs(width))} characters")
        return _lib("pad")(string, width, char)

    @staticmethod
    def join(strs: Any, separator: Any) -> Any:
        if isinstance(strs, list):
            total = sum(len(s) for s in strs if isinstance(s, str))
            if isinstance(separator, str):
                total += len(separator) * len(strs)
            if total > _MAX_STRING_CHARS:
                raise _TooBig(f"$join of {total} characters")
        return _lib("join")(strs, separator)

    @staticmethod
    def replace(string: Any, pattern: Any, replacement: Any, limit: Any) -> Any:
        texts = isinstance(string, str) and isinstance(replacement, str)
        if texts and isinstance(pattern, str) and pattern:
            grown = string.count(pattern) * max(0, len(replacement) - len(pattern))
            if len(string) + grown > _MAX_STRING_CHARS:
                raise _TooBig(f"$replace producing {len(string) + grown} characters")
        return _lib("replace")(string, pattern, replacement, limit)

    @staticmethod
    def split(string: Any, separator: Any, limit: Any) -> Any:
        if isinstance(string, str) and isinstance(separator, str):
            parts = string.count(separator) + 1 if separator else len(string)
            if isinstance(limit, int | float) and not isinstance(limit, bool) and limit >= 0:
                parts = min(parts, int(limit))
            if parts > _MAX_ITEMS:
                raise _TooBig(f"a split into {parts} parts (limit {_MAX_ITEMS})")
        return _lib("split")(string, separator, limit)

    @staticmethod
    def string(arg: Any, prettify: Any) -> Any:
        if not isinstance(arg, str):
            _check_json_size(arg)
        return _lib("string")(arg, prettify)

    @staticmethod
    def function_clone(arg: Any) -> Any:
        _check_json_size(arg)
        return _lib("function_clone")(arg)

    @staticmethod
    def distinct(arr: Any) -> Any:
        """Like the library's, with JSONata equality instead of C ``==`` on nested values."""
        if arr is None or not isinstance(arr, list) or len(arr) <= 1:
            return arr
        results = jutils.Utils.create_sequence() if isinstance(arr, jutils.Utils.JList) else []
        scalars: set[tuple[str, Any]] = set()
        containers: list[Any] = []
        for el in arr:
            if isinstance(el, dict | list):
                if any(jutils.Utils.is_deep_equal(el, seen) for seen in containers):
                    continue
                containers.append(el)
            else:
                key = (type(el).__name__ if isinstance(el, bool | str) else "n", el)
                if el is None or el is _Null:
                    key = ("null", None)
                if key in scalars:
                    continue
                scalars.add(key)
            results.append(el)
        return results

    @staticmethod
    def datetime_to_millis(timestamp: Any, picture: Any) -> Any:
        if picture is not None:
            # jsonata-python turns the picture into a Python `re` pattern (literal text
            # unescaped), which can backtrack for hours where no timeout reaches it.
            raise _Refused(
                "$toMillis with a picture string is not supported; pass an ISO 8601 timestamp"
            )
        return _lib("datetime_to_millis")(timestamp, picture)

    _SINGLE_CHAR_FORMAT_OPTIONS = frozenset(
        {
            "decimal-separator",
            "grouping-separator",
            "exponent-separator",
            "zero-digit",
            "digit",
            "percent",
            "per-mille",
            "pattern-separator",
            "minus-sign",
        }
    )

    @staticmethod
    def format_number(value: Any, picture: Any, decimal_format: Any) -> Any:
        # The library pastes these options into `re` patterns; longer text could inject one.
        if isinstance(decimal_format, dict):
            for key, option in decimal_format.items():
                if key in _GuardedFunctions._SINGLE_CHAR_FORMAT_OPTIONS and not (
                    isinstance(option, str) and len(option) == 1
                ):
                    raise _Refused(f"$formatNumber option {key} must be one character")
        return _lib("format_number")(value, picture, decimal_format)


_OVERRIDES = {
    "pad": "pad",
    "split": "split",
    "join": "join",
    "replace": "replace",
    "string": "string",
    "clone": "function_clone",
    "distinct": "distinct",
    "toMillis": "datetime_to_millis",
    "formatNumber": "format_number",
}


@lru_cache(maxsize=1)
def _base_frame() -> Any:
    """The library's built-ins, with the guarded versions bound over the risky ones."""
    static = jjsonata.Jsonata.static_frame
    frame = jjsonata.Jsonata.Frame(static)
    for name, method_name in _OVERRIDES.items():
        native = copy.copy(static.bindings[name])
        method = getattr(_GuardedFunctions, method_name)
        if len(inspect.signature(method).parameters) != native.nargs:  # library changed
            raise RuntimeError(f"jsonata ${name} no longer matches its guarded version")
        native.method = method
        frame.bind(name, native)
    return frame


class _BoundedTransformer(jjsonata.Jsonata.Transformer):  # type: ignore[misc]
    """``~> |pattern|update|`` deep-copies its input through JSON: measure it first."""

    def call(self, input: Any, args: Any) -> Any:
        if args:
            _check_json_size(args[0])
        return super().call(input, args)


class _Engine(jjsonata.Jsonata):  # type: ignore[misc]
    """A per-thread evaluator; jsonata-python keeps evaluation state on the instance."""

    def __init__(self) -> None:
        super().__init__("$", _compile_regex)

    def get_per_thread_instance(self) -> _Engine:
        return self

    def eval(self, expr: Any, input: Any, environment: Any) -> Any:
        guard = _current_guard()
        guard.enter()
        try:
            result = super().eval(expr, input, environment)
        finally:
            guard.depth -= 1
        guard.check_result(getattr(expr, "type", ""), result)
        return result

    def evaluate_includes_expression(self, lhs: Any, rhs: Any) -> Any:
        if lhs is None or rhs is None:
            return False
        items = rhs if isinstance(rhs, list) else [rhs]
        return any(jutils.Utils.is_deep_equal(item, lhs) for item in items)

    def evaluate_string_concat(self, lhs: Any, rhs: Any) -> Any:
        for side in (lhs, rhs):
            if side is not None and not isinstance(side, str):
                _check_json_size(side)
        return super().evaluate_string_concat(lhs, rhs)

    def evaluate_transform_expression(self, expr: Any, input: Any, environment: Any) -> Any:
        transformer = _BoundedTransformer(self, expr, environment)
        return jjsonata.Jsonata.JFunction(transformer, "<(oa):o>")

    def run(self, ast: Any, data: Any, bindings: Mapping[str, Any]) -> Any:
        """``Jsonata.evaluate`` without its in-place null conversion of shared values."""
        env = self.create_frame(_base_frame())
        for name, value in bindings.items():
            env.bind(name, value)
        env.bind("$", data)
        self.timestamp = round(time.time() * 1000)  # what $now() and $millis() report
        jjsonata.Jsonata.CURRENT.jsonata = self  # $eval finds its enclosing instance here
        if isinstance(data, list):
            data = jutils.Utils.create_sequence(data)
            data.outer_wrapper = True
        return self.eval(ast, data, env)


def _engine() -> _Engine:
    engine = _STATE.engine
    if engine is None:
        engine = _STATE.engine = _Engine()
    return engine


@lru_cache(maxsize=_CACHE_SIZE)
def _compile(source: str) -> Any:
    """Parse ``source`` into a shareable AST; raises on syntax errors."""
    if not source.strip():
        raise _Refused("the expression is empty")
    if len(source) > _MAX_SOURCE_CHARS:
        raise _Refused(f"the expression is longer than {_MAX_SOURCE_CHARS} characters")
    return jjsonata.Jsonata(source, _compile_regex).ast


def _syntax_reason(exc: BaseException) -> str:
    if isinstance(exc, JException):
        return f"{exc} (JSONata {exc.error} at position {exc.location})"
    if isinstance(exc, RecursionError):
        return "the expression is nested too deeply"
    return _one_line(str(exc)) or type(exc).__name__


def check_syntax(source: str) -> str | None:
    """None if ``source`` (the text between ``{%`` and ``%}``) parses, else a one-line reason."""
    try:
        _compile(source)
    except Exception as exc:
        return _syntax_reason(exc)
    return None


# --------------------------------------------------------------------------------------------
# Converting values in and out
# --------------------------------------------------------------------------------------------


class _NotJson(Exception):
    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{what} at {where}")


def _to_json(value: Any, where: str, depth: int = 0) -> _Json:
    """A fresh copy of ``value`` made of plain JSON types, or ``_NotJson``."""
    if depth > _MAX_NESTING:
        raise _NotJson(where, f"nesting deeper than {_MAX_NESTING} levels")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson(where, f"the number {value}")
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, child in value.items():
            if not isinstance(key, str):
                raise _NotJson(where, f"the non-string key {key!r}")
            out[key] = _to_json(child, _child_path(where, key), depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_to_json(child, f"{where}[{i}]", depth + 1) for i, child in enumerate(value)]
    raise _NotJson(where, f"a {type(value).__name__}")


class _NotJsonResult(Exception):
    """An engine result with something JSON cannot hold (a function, NaN)."""


def _from_engine(value: Any, budget: int) -> _Json:
    """Copy an engine result into plain JSON, giving up once it clearly exceeds ``budget``."""
    size = 0

    def convert(item: Any, depth: int) -> _Json:
        nonlocal size
        if depth > _MAX_NESTING:
            raise _TooBig(f"a result nested deeper than {_MAX_NESTING} levels")
        size += (len(item) + 2) if isinstance(item, str) else 2
        if size > budget:
            raise _TooBig(f"a JSON text of more than {budget} characters")
        if item is None or item is _Null:
            return None
        if isinstance(item, bool | str | int):
            return item
        if isinstance(item, float):
            if not math.isfinite(item):
                raise _NotJsonResult(f"returned the number {item}, which JSON cannot hold")
            return item
        if isinstance(item, dict):
            out = {}
            for key, child in item.items():
                size += len(str(key)) + 2
                out[str(key)] = convert(child, depth + 1)
            return out
        if isinstance(item, list):
            return [convert(child, depth + 1) for child in item]
        raise _NotJsonResult("returned a function, which is not JSON data")

    return convert(value, 0)


def _json_text(value: _Json) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Evaluating
# --------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quote(source: str) -> str:
    text = _one_line(source)
    if len(text) > _QUOTE_CHARS:
        text = text[: _QUOTE_CHARS - 1] + "…"
    return text


def _shown(source: str) -> str:
    return f"{_OPEN} {_quote(source)} {_CLOSE}"


class _Run:
    """One ``evaluate`` call: its context, limits and the expression being evaluated."""

    SYNTAX_SOLUTION: ClassVar[str] = (
        "Fix the JSONata between {% and %}: check brackets, quotes and operators near the "
        "position given."
    )
    RUNTIME_SOLUTION: ClassVar[str] = (
        "Check the functions the expression calls and the data it reads from $input, $nodes "
        "and $run (a missing field is undefined, not an error)."
    )

    def __init__(
        self,
        ctx: ExpressionContext,
        where: str,
        timeout_ms: int,
        max_depth: int,
        max_result_bytes: int,
    ) -> None:
        self.ctx = ctx
        self.where = where
        self.timeout_ms = timeout_ms
        self.max_depth = max_depth
        self.max_result_bytes = max_result_bytes
        self.bindings: dict[str, _Json] | None = None
        self.current = (where, "")

    def _bindings(self) -> dict[str, _Json]:
        if self.bindings is None:
            where, source = self.current
            try:
                self.bindings = {
                    name: _to_json(value, f"${name}") for name, value in self.ctx.variables.items()
                }
                self.bindings["input"] = _to_json(self.ctx.input, "$input")
                self.bindings["nodes"] = _to_json(self.ctx.nodes, "$nodes")
                self.bindings["run"] = _to_json(self.ctx.run, "$run")
            except _NotJson as exc:
                raise ExpressionError(
                    f"The data for the expression at {where} holds {exc}, which is not JSON.",
                    where=where,
                    expression=source,
                    solution="Loom passes only JSON values to expressions; report this as a bug.",
                ) from None
        return self.bindings

    def fail(
        self, what: str, solution: str, cls: type[ExpressionError] = ExpressionError
    ) -> ExpressionError:
        where, source = self.current
        return cls(
            f"Expression at {where} {what}: {_shown(source)}",
            where=where,
            expression=source,
            solution=solution,
        )

    def value(self, source: str, path: str) -> tuple[Any, _Json]:
        """``(raw engine result, JSON result)`` of one expression."""
        self.current = (path, source)
        try:
            ast = _compile(source)
        except Exception as exc:
            what = f"has a syntax error ({_syntax_reason(exc)})"
            raise self.fail(what, self.SYNTAX_SOLUTION) from exc
        bindings = self._bindings()
        guard = _current_guard()
        guard.start_expression()
        try:
            raw = _engine().run(ast, bindings["input"], bindings)
        except RecursionError:
            raise _TooDeep(_PYTHON_STACK) from None
        except MemoryError:
            raise _TooBig("more memory than is available") from None
        except JException as exc:
            what = f"failed ({_one_line(str(exc))}; JSONata {exc.error})"
            raise self.fail(what, self.RUNTIME_SOLUTION) from exc
        except Exception as exc:
            what = f"failed ({_one_line(str(exc)) or type(exc).__name__})"
            raise self.fail(what, self.RUNTIME_SOLUTION) from exc
        return raw, self.to_json(raw)

    def to_json(self, raw: Any) -> _Json:
        limit = self.max_result_bytes
        try:
            _check_json_size(raw, limit)  # quick refusal, also for shared structure
            out = _from_engine(raw, limit)
        except _NotJsonResult as exc:
            raise self.fail(
                str(exc), "Return JSON data; call functions ($f(x)) rather than returning them."
            ) from None
        except _TooBig as exc:
            if "JSON text" not in exc.reason:
                raise
            raise self.too_big(f"more than {limit}") from None
        size = len(_json_text(out).encode())
        if size > limit:
            raise self.too_big(str(size))
        return out

    def too_big(self, size: str) -> ExpressionError:
        return self.fail(
            f"produced {size} bytes of JSON, above the limit of {self.max_result_bytes}",
            "Return less data: select the fields you need, or filter and aggregate first.",
        )

    def string(self, text: str, path: str) -> _Json:
        parts = _split_template(text)
        if parts is None:
            return text
        if _is_whole(parts):
            source = next(p[1] for p in parts if p[0])
            return self.value(source, path)[1]
        pieces: list[str] = []
        for is_expr, part in parts:
            if not is_expr:
                pieces.append(part)
                continue
            raw, out = self.value(part, path)
            if isinstance(out, str):
                pieces.append(out)
            elif raw is not None:  # undefined renders as nothing, null as "null"
                pieces.append(_json_text(out))
        result = "".join(pieces)
        size = len(_json_text(result).encode())
        if size > self.max_result_bytes:
            raise self.too_big(str(size))
        return result

    def walk(self, value: Any, path: str) -> Any:
        if isinstance(value, str):
            return self.string(value, path)
        if isinstance(value, Mapping):
            return {k: self.walk(v, _child_path(path, str(k))) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.walk(v, _child_path(path, i)) for i, v in enumerate(value)]
        return value

    def limit_error(self, exc: _Abort) -> ExpressionError:
        if isinstance(exc, _Deadline):
            return self.fail(
                f"did not finish within {self.timeout_ms} ms",
                "Look for recursion that never ends or work over very large ranges or arrays; "
                "simplify the expression or move heavy work into a node.",
                ExpressionTimeout,
            )
        if isinstance(exc, _TooDeep):
            limit = exc.args[0] if exc.args else f"{self.max_depth} levels"
            return self.fail(
                f"nested deeper than {limit}",
                "Make recursive functions stop (or recurse only in tail position), "
                "and split deeply nested expressions.",
            )
        reason = exc.reason if isinstance(exc, _TooBig) else str(exc)
        return self.fail(
            f"built a value that is too large ({reason})",
            "Work on less data at once: filter early and avoid building huge strings, "
            "ranges or arrays.",
        )


def evaluate(
    value: Any,
    ctx: ExpressionContext,
    *,
    where: str,
    timeout_ms: int = 1000,
    max_depth: int = 100,
    max_result_bytes: int = 1_000_000,
) -> Any:
    """A copy of ``value`` with every ``{% %}`` expression evaluated against ``ctx``.

    A string that is one expression (whitespace around allowed) becomes its JSON value
    (undefined becomes None); a string mixing text and expressions becomes a string, each
    result rendered as-is if a string, else as compact JSON (undefined as nothing).
    ``where`` names the location of ``value`` in error messages (paths inside it are
    appended). ``timeout_ms`` bounds the whole call, ``max_depth`` the evaluation nesting of
    each expression (jsonata's stack depth), ``max_result_bytes`` the compact JSON of each
    expression's result. Every failure is an ``ExpressionError`` (``ExpressionTimeout`` for
    time). ``value`` and ``ctx`` are never modified.
    """
    run = _Run(ctx, where, timeout_ms, max_depth, max_result_bytes)
    if not contains_expression(value):
        try:
            return run.walk(value, where)
        except RecursionError:
            raise run.limit_error(_TooDeep(_PYTHON_STACK)) from None
    guard = _Guard(time.monotonic() + timeout_ms / 1000, max_depth)
    previous = _STATE.guard
    watchdog = _WATCHDOG
    # Shape matters: the watchdog's interrupt can land anywhere between arm() and the end of
    # disarm(), and every such place is inside the outer try.
    try:
        ticket = watchdog.arm(guard.deadline) if watchdog is not None else None
        try:
            _STATE.guard = guard
            return run.walk(value, where)
        finally:
            _STATE.guard = previous
            if watchdog is not None and ticket is not None:
                watchdog.disarm(ticket)
    except _Abort as exc:
        raise run.limit_error(exc) from None
    except RecursionError:
        raise run.limit_error(_TooDeep(_PYTHON_STACK)) from None
