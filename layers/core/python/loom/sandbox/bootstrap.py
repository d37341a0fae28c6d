"""The child side of the local code sandbox.

Run as ``python -I -S -B bootstrap.py LIMITS`` with an empty environment, in a fresh
working directory; it never imports Loom. Stdin carries ``{"code", "inputs", "user"}``;
the one line written to the private result descriptor (a copy of the original stdout) is
``{"ok": true, "value": ...}`` or ``{"ok": false, "error": {"kind", ...}}``. Anything the
code prints goes to stderr, which the parent keeps as logs.

Before any user code runs, in this order:

1. kernel limits (CPU, address space, file size, open files, no new processes, no core);
2. the code is compiled (a syntax error is reported, nothing runs);
3. the allow-listed modules the code names are imported: they are the only modules it
   will ever have, since nothing can be loaded afterwards;
4. the process drops to the unprivileged ``user`` (uid, gid, no supplementary groups),
   so file permissions keep it from Loom's files and other processes;
5. Python is locked down: process and signal functions removed from ``os``/``posix``,
   native-module loading removed from ``_imp``, the import system emptied, dangerous
   modules poisoned in ``sys.modules``, imports limited to the allow-list, and an audit
   hook (which cannot be removed) refusing process creation, sockets, ctypes, crafted
   bytecode and file access outside the working directory.

Steps 3 and 5 are defence in depth, not the boundary: code can reach ``sys`` through the
attributes of allowed modules. The boundary is the process, its limits and its uid.
"""

from __future__ import annotations

import _imp
import builtins
import itertools
import json
import os
import posix
import resource
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import CodeType, TracebackType
    from typing import Any, NoReturn

USER_FILE = "<code>"
USER_MODULE = "__loom_code__"
MAX_FRAMES = 20
MAX_MESSAGE_CHARS = 2000
MAX_WRITABLE_OPENS = 32  # with RLIMIT_FSIZE, bounds the disk one execution can fill

ALLOWED_MODULES = frozenset(
    {
        "base64",
        "bisect",
        "collections",
        "collections.abc",
        "copy",
        "csv",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "html",
        "html.entities",
        "io",
        "itertools",
        "json",
        "math",
        "operator",
        "random",
        "re",
        "statistics",
        "string",
        "textwrap",
        "typing",
        "unicodedata",
        "urllib",
        "urllib.parse",
        "uuid",
        "zoneinfo",
    }
)
# Modules an allowed one imports lazily at call time, or that ``from X import Y`` needs.
COMPANIONS = {
    "collections": ("collections.abc",),
    "csv": ("encodings.utf_8_sig", "encodings.cp1252"),
    "datetime": ("_strptime",),
    "io": ("encodings.utf_8_sig", "encodings.cp1252"),
    "urllib": ("urllib.parse",),
}
POISONED_MODULES = (
    "_ctypes",
    "_cffi_backend",
    "_multiprocessing",
    "_posixsubprocess",
    "_socket",
    "cffi",
    "ctypes",
    "faulthandler",
    "mmap",
    "multiprocessing",
    "pty",
    "socket",
    "subprocess",
)
# Removed from ``os`` and ``posix``: no process is created or signalled from the sandbox.
PROCESS_FUNCTIONS = (
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "fork",
    "forkpty",
    "kill",
    "killpg",
    "pidfd_open",
    "popen",
    "posix_spawn",
    "posix_spawnp",
    "register_at_fork",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "system",
)
# Removed from ``_imp``: what loads native code or re-creates the modules above.
NATIVE_LOADERS = ("create_builtin", "create_dynamic", "exec_builtin", "exec_dynamic")

DENIED_EVENTS = frozenset(
    {
        "code.__new__",
        "gc.get_objects",
        "gc.get_referents",
        "gc.get_referrers",
        "import",
        "marshal.load",
        "marshal.loads",
        "os.chdir",
        "os.chmod",
        "os.chown",
        "os.chroot",
        "os.exec",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "os.link",
        "os.posix_spawn",
        "os.spawn",
        "os.symlink",
        "os.system",
        "pty.spawn",
        "resource.prlimit",
        "resource.setrlimit",
        "subprocess.Popen",
    }
)
DENIED_EVENT_MODULES = frozenset({"ctypes", "socket"})
PATH_EVENTS = frozenset(
    {
        "os.listdir",
        "os.mkdir",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.scandir",
        "os.truncate",
        "os.utime",
    }
)
READ_ONLY_EVENTS = frozenset({"os.listdir", "os.scandir"})
# zoneinfo's compiled-in search path: time zone data may be read, nothing else outside.
READ_ONLY_DIRS = (
    "/usr/share/zoneinfo/",
    "/usr/lib/zoneinfo/",
    "/usr/share/lib/zoneinfo/",
    "/etc/zoneinfo/",
)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class SetupFailed(Exception):
    """The sandbox could not be made as asked: nothing of the code runs."""


def main() -> None:
    result_fd = os.dup(1)
    os.dup2(2, 1)  # print() and fd 1 now reach stderr, the logs
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        limits = json.loads(sys.argv[1])
        apply_limits(limits)
        request = json.loads(sys.stdin.buffer.read())
        sys.stdin.close()
        source: str = request["code"]
        try:
            code = compile(source, USER_FILE, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            finish(result_fd, {"ok": False, "error": syntax_error(exc)})
        preload(code)
        drop_privileges(request["user"])
        user_builtins = lock_down(os.getcwd())
    except MemoryError:
        finish(result_fd, {"ok": False, "error": {"kind": "memory"}})
    except Exception as exc:  # fail closed: none of the code runs
        failure = {"kind": "sandbox", "message": f"{type(exc).__name__}: {exc}"}
        finish(result_fd, {"ok": False, "error": failure})
    send = make_sender(result_fd, os.write, os._exit, json.dumps)
    send(run(code, source, request["inputs"], user_builtins, limits["max_output"]))


def apply_limits(limits: dict[str, int]) -> None:
    """Kernel limits, never above what this process already has."""
    cpu = limits["cpu"]
    wanted = (
        (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL a second on
        (resource.RLIMIT_AS, limits["memory"], limits["memory"]),
        (resource.RLIMIT_FSIZE, limits["fsize"], limits["fsize"]),
        (resource.RLIMIT_NOFILE, limits["nofile"], limits["nofile"]),
        (resource.RLIMIT_NPROC, 0, 0),  # applies once the process is not root
        (resource.RLIMIT_CORE, 0, 0),
    )
    for kind, soft, hard in wanted:
        _, current = resource.getrlimit(kind)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))


def syntax_error(exc: SyntaxError | ValueError) -> dict[str, Any]:
    if isinstance(exc, SyntaxError):
        return {"kind": "syntax", "message": exc.msg, "line": exc.lineno, "offset": exc.offset}
    return {"kind": "syntax", "message": str(exc), "line": None, "offset": None}


def preload(code: CodeType) -> None:
    """Import the allowed modules the code names (in imports, attributes or strings)."""
    wanted: set[str] = set()
    pending = [code]
    while pending:
        current = pending.pop()
        wanted.update(name for name in current.co_names if name in ALLOWED_MODULES)
        for const in current.co_consts:
            if type(const) is str and const in ALLOWED_MODULES:
                wanted.add(const)
            elif isinstance(const, type(code)):
                pending.append(const)
    for name in sorted(wanted):
        for module in (name, *COMPANIONS.get(name, ())):
            __import__(module)


def drop_privileges(user: list[int] | None) -> None:
    if user is None:
        return
    uid, gid = user
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise SetupFailed(f"could not become uid {uid}, gid {gid}")
    if os.getgroups():
        raise SetupFailed("supplementary groups remain after dropping privileges")


def lock_down(workdir: str) -> dict[str, Any]:
    """Take away what Python could reach; return the builtins the user code gets."""
    for module in (os, posix):
        for name in PROCESS_FUNCTIONS:
            module.__dict__.pop(name, None)
    for name in NATIVE_LOADERS:
        _imp.__dict__.pop(name, None)
    for name in POISONED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    sys.meta_path[:] = [NothingMore]
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()
    sys.path.clear()
    os.environ.clear()
    user_builtins = dict(builtins.__dict__)
    user_builtins["__import__"] = guarded_import(builtins.__import__)
    install_audit_hook(workdir)
    return user_builtins


class NothingMore:
    """The only import finder left: every module the code may use is already loaded."""

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> None:
        raise ImportError(f"module {name!r} is not available in Code nodes", name=name)


def guarded_import(real: Callable[..., Any]) -> Callable[..., Any]:
    """``__import__`` for the code: the allow-list, plus the helpers allowed modules import
    lazily (C code imports with the builtins of the frame that calls it, the user's)."""
    importable = ALLOWED_MODULES.union(*COMPANIONS.values())
    allowed = ", ".join(sorted(ALLOWED_MODULES))

    def __import__(  # noqa: N807 - it is the builtin it replaces
        name: str,
        globals: Any = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if level != 0 or name not in importable:
            raise ImportError(
                f"Code nodes cannot import {name!r}; they can import {allowed}.", name=name
            )
        return real(name, globals, locals, fromlist, level)

    return __import__


def install_audit_hook(workdir: str) -> None:
    """Refuse, at the interpreter level, what no path to a function may do.

    The hook lives only in the interpreter (nothing references it from Python, and the
    ``gc`` walks that could find it are refused). It reads nothing from globals or
    builtins, which code can reach and change: every name it uses is bound in a closure,
    to immutable values or methods of exact built-in types. The write budget only counts up.
    """
    sys.addaudithook(audit_hook(path_rule(workdir)))


def path_rule(workdir: str) -> Callable[[Any, bool], bool]:
    """Whether a path may be used: relative or under ``workdir``, never through ``..``;
    time zone data may also be read."""
    exact_type, int_type, str_type, bytes_type = type, int, str, bytes
    read_only_dirs, inside = READ_ONLY_DIRS, workdir + "/"

    def allowed(path: Any, write: bool) -> bool:
        kind = exact_type(path)
        if kind is int_type:
            return True  # an already open descriptor
        if kind is bytes_type:
            path = path.decode("utf-8", "surrogateescape")
        elif kind is not str_type:
            return False
        if ".." in path.split("/"):
            return False
        if not path.startswith("/") or path == workdir or path.startswith(inside):
            return True
        return not write and path.startswith(read_only_dirs)

    return allowed


def audit_hook(allowed: Callable[[Any, bool], bool]) -> Callable[[str, tuple[Any, ...]], None]:
    denied, denied_modules = DENIED_EVENTS, DENIED_EVENT_MODULES
    path_events, read_only_events = PATH_EVENTS, READ_ONLY_EVENTS
    write_flags, max_writes, writes = WRITE_FLAGS, MAX_WRITABLE_OPENS, itertools.count(1)
    exact_type, int_type, str_type, bytes_type = type, int, str, bytes
    refuse, unavailable, next_write = PermissionError, ImportError, next

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in denied or event.partition(".")[0] in denied_modules:
            if event == "import":
                raise unavailable(f"module {args[0]!r} is not available in Code nodes")
            raise refuse(f"{event} is not allowed in Code nodes")
        if event == "open":
            mode = args[1]
            if exact_type(mode) is str_type:
                write = "w" in mode or "a" in mode or "x" in mode or "+" in mode
            else:
                write = args[2] & write_flags != 0
            paths: tuple[Any, ...] = args[:1]
        elif event in path_events:
            write = event not in read_only_events
            paths = args
        else:
            return
        for path in paths:
            kind = exact_type(path)
            named = kind is str_type or kind is bytes_type
            if (named or event == "open") and not allowed(path, write):
                where = "their working directory"
                raise refuse(f"Code nodes can only use files in {where}, not {path!r}")
        if write and exact_type(args[0]) is not int_type and next_write(writes) > max_writes:
            raise refuse(f"Code nodes can open at most {max_writes} files for writing")

    return hook


def run(
    code: CodeType,
    source: str,
    inputs: Any,
    user_builtins: dict[str, Any],
    max_output: int,
) -> dict[str, Any] | bytes:
    """Run the user's ``main(inputs)``; the result line, or its error as a message."""
    namespace: dict[str, Any] = {"__name__": USER_MODULE, "__builtins__": user_builtins}
    try:
        exec(code, namespace)  # noqa: S102 - this process exists to run it
        entry = namespace.get("main")
        if not callable(entry):
            return {"ok": False, "error": {"kind": "no_main"}}
        value = entry(inputs)
    except MemoryError:
        return {"ok": False, "error": {"kind": "memory"}}
    except BaseException as exc:  # everything the code raises is the code's result
        return {"ok": False, "error": user_error(exc, source.splitlines())}
    try:
        data = json.dumps(value, allow_nan=False).encode()
    except MemoryError:
        return {"ok": False, "error": {"kind": "memory"}}
    except Exception as exc:
        return {"ok": False, "error": {"kind": "invalid_result", "message": describe(exc)}}
    if len(data) > max_output:
        return {"ok": False, "error": {"kind": "too_large", "size": len(data)}}
    return b'{"ok":true,"value":' + data + b"}"


def user_error(exc: BaseException, lines: list[str]) -> dict[str, Any]:
    frames = user_frames(exc.__traceback__, lines)
    last_line = frames[-1][0] if frames else None
    shown = [f"  line {n}, in {name}\n    {text}" for n, name, text in frames[-MAX_FRAMES:]]
    if len(frames) > MAX_FRAMES:
        shown.insert(0, f"  ... {len(frames) - MAX_FRAMES} earlier frames")
    return {
        "kind": "exception",
        "type": type(exc).__name__,
        "message": describe(exc),
        "line": last_line,
        "traceback": "\n".join(["Traceback (most recent call last):", *shown]),
    }


def user_frames(tb: TracebackType | None, lines: list[str]) -> list[tuple[int, str, str]]:
    """The frames of the user's code only, with line numbers of their source."""
    frames = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == USER_FILE:
            number = tb.tb_lineno
            text = lines[number - 1].strip() if 0 < number <= len(lines) else ""
            frames.append((number, code.co_name, text))
        tb = tb.tb_next
    return frames


def describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "(the exception's message could not be read)"
    return text[:MAX_MESSAGE_CHARS]


def make_sender(
    fd: int,
    write: Callable[[int, bytes], int],
    exit_now: Callable[[int], NoReturn],
    dumps: Callable[..., str],
) -> Callable[[dict[str, Any] | bytes], NoReturn]:
    """Bind what reporting needs before the code runs: it may replace module functions."""

    def send(message: dict[str, Any] | bytes) -> NoReturn:
        data = message if isinstance(message, bytes) else dumps(message).encode()
        data += b"\n"
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        except Exception:  # noqa: S110 - the code may have closed or replaced them
            pass
        try:
            while data:
                data = data[write(fd, data) :]
        except OSError:  # the code closed the result descriptor: the parent sees no result
            exit_now(1)
        exit_now(0)

    return send


def finish(fd: int, message: dict[str, Any]) -> NoReturn:
    make_sender(fd, os.write, os._exit, json.dumps)(message)


if __name__ == "__main__":
    main()
