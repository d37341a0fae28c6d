"""Running user Python (ACTION.CODE) isolated from Loom.

Locally (``LocalProcessRunner``) every execution is a fresh ``python -I -S -B`` process
started from a small bootstrap script, never from Loom itself. The layers, strongest first:

- **The process** with an empty environment (no ``DATABASE_URL``, no keys), a new
  temporary working directory, no inherited descriptors and its own session, killed as a
  group on the wall-clock timeout.
- **Kernel limits** (setrlimit): CPU seconds, address space, file size, open files, no
  new processes or threads, no core dumps. Output is capped by the parent as it reads.
- **Another uid**: as root, the child becomes ``nobody`` with no groups before the code
  runs, so file permissions keep it from ``.loom/``, the master key (0600) and Loom's own
  ``/proc`` entries. Not root: this layer is missing, and a warning says so.
- **Python-level guards** (defence in depth, not the boundary): imports limited to an
  allow-list of pure standard-library modules loaded before the code runs, ``ctypes`` and
  friends poisoned, process functions removed, and an audit hook refusing process
  creation, sockets, crafted bytecode and files outside the working directory.

Network: locally the only barrier is the Python level (no socket can be created, and no
module that could make one can be loaded). True isolation needs a network namespace
(``unshare --net``, or ``os.unshare(CLONE_NEWNET)`` from Python 3.12) - future hardening.
On AWS, Code nodes run in their own Lambda with a role that has no permissions and no
VPC access to the database.
"""

from loom.sandbox.base import (
    CodeCrashed,
    CodeError,
    CodeFailed,
    CodeInvalid,
    CodeInvalidResult,
    CodeMemoryExceeded,
    CodeOutputTooLarge,
    CodeResult,
    CodeRunner,
    CodeTimeout,
    Limits,
    SandboxUnavailable,
    check_syntax,
)
from loom.sandbox.local import LocalProcessRunner

__all__ = [
    "CodeCrashed",
    "CodeError",
    "CodeFailed",
    "CodeInvalid",
    "CodeInvalidResult",
    "CodeMemoryExceeded",
    "CodeOutputTooLarge",
    "CodeResult",
    "CodeRunner",
    "CodeTimeout",
    "Limits",
    "LocalProcessRunner",
    "SandboxUnavailable",
    "check_syntax",
]
