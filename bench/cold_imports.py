"""Cold import figures of the Lambda entry points under ``functions/``, for bench/api.py and
bench/cloud_cost.py.

Each module is imported in a fresh interpreter that can import only what the function's
Lambda layers hold (layers/deps/requirements.txt with its dependencies, plus
layers/llm/requirements.txt for the model callers; boto3 comes with the runtime). Here the
dev environment holds more, which libraries import when they find it (httpx imports its
command line's rich and pygments, httpcore imports h2): without the fence the figures would
count them. A module the layers lack but an entry point imports anyway fails its figure.
Modules load from bytecode, as from the layers, which ship it (stacks/functions.py compiles
all three, Loom's included, when the synthesizing Python is the runtime's; else they ship
source, compiled on every cold start, and these figures are too low): each figure's first
run fills a bytecode cache of the bench's own (``PYTHONPYCACHEPREFIX``; the venv here may
hold no .pyc and ``PYTHONDONTWRITEBYTECODE`` may be set, and compiling would double the
figures) and is not counted.

Per entry point: the import time (the minimum of a few runs), the time above its floor,
and whether litellm was imported. The floor is what the function cannot avoid importing:
``import fastapi`` for functions/api; for the others the database driver, its pool and the
settings library (``psycopg, psycopg_pool, pydantic_settings``), which every engine,
trigger and worker function uses on every invocation (the code function and redrive use
neither database nor pool, and may land below it). Powertools is imported by every
handler on its first invocation, not at import: it is in neither figure (printed apart).
Target: at most 400 ms for functions that do not call models (machine-dependent: a miss is
marked, not fatal).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 400.0
# The stacks give these the llm layer (stacks/constants.py; EXAM_JOB in stacks/triggers.py).
MODEL_CALLERS = {
    "functions/api/agents.py",
    "functions/api/builder.py",
    "functions/nodes/ai_agent.py",
    "functions/workers/exams.py",
}
API_FLOOR = "fastapi"
FLOOR = "psycopg, psycopg_pool, pydantic_settings"
POWERTOOLS = "aws_lambda_powertools.metrics"  # what a handler's first invocation imports
# In the Lambda Python runtime, not in a layer.
RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
OURS = ("loom", "functions")

# Refuses a top-level import found in site-packages unless it is an allowed package.
_FENCE = """\
import sys, sysconfig
from importlib.machinery import PathFinder
SITE = tuple({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
ALLOWED = set(%r)
class _Fence:
    def find_spec(self, name, path=None, target=None):
        if path is not None or name in ALLOWED:
            return None
        spec = PathFinder.find_spec(name)
        where = [spec.origin or ""] + list(spec.submodule_search_locations or []) if spec else []
        if any(place.startswith(SITE) for place in where):
            raise ModuleNotFoundError(f"No module named {name!r} in the Lambda layers", name=name)
        return None
sys.meta_path.insert(0, _Fence())
"""
_TIMED = """\
import time
started = time.perf_counter()
import %s
took = time.perf_counter() - started
print(took * 1000, "litellm" in sys.modules)
"""


@dataclass(frozen=True)
class Figure:
    path: str  # functions/api/runs.py
    ms: float
    floor_ms: float
    litellm: bool

    @property
    def over_target(self) -> bool:
        return self.path not in MODEL_CALLERS and self.ms > TARGET_MS


def layer_modules(*requirement_files: Path) -> frozenset[str]:
    """Top-level module names of what pip would install from ``requirement_files`` (the
    versions installed here), the Lambda runtime's boto3, and Loom."""
    wanted: set[str] = set()
    todo = [
        Requirement(line.strip())
        for path in requirement_files
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in wanted:
            continue
        wanted.add(name)
        try:
            needs = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:
            continue
        extras = sorted(requirement.extras) or [""]
        for text in needs:
            need = Requirement(text)
            if need.marker is None or any(
                need.marker.evaluate({"extra": extra}) for extra in extras
            ):
                todo.append(need)
    modules = {
        top
        for top, dists in metadata.packages_distributions().items()
        if any(canonicalize_name(dist) in wanted for dist in dists)
    }
    return frozenset(modules | set(RUNTIME) | set(OURS))


def import_ms(
    modules: str, allowed: frozenset[str], bytecode: str, repeat: int = 3
) -> tuple[float, bool]:
    """The least of ``repeat`` cold imports of ``modules`` (ms), after one that fills the
    ``bytecode`` cache, and whether litellm came."""
    code = _FENCE % sorted(allowed) + _TIMED % modules
    env = {**os.environ, "PYTHONPYCACHEPREFIX": bytecode}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    runs = []
    for _ in range(1 + repeat):
        found = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if found.returncode:
            raise RuntimeError(f"import {modules}: {found.stderr.strip().splitlines()[-1]}")
        took, litellm = found.stdout.split()
        runs.append((float(took), litellm == "True"))
    return min(runs[1:])


def _floor(path: str) -> str:
    return API_FLOOR if path.startswith("functions/api/") else FLOOR


def figures(
    paths: list[Path], bytecode: str, repeat: int = 3
) -> tuple[dict[str, float], list[Figure]]:
    """The floors used (``import ...`` -> ms) and a figure per entry point file."""
    deps = ROOT / "layers" / "deps" / "requirements.txt"
    llm = ROOT / "layers" / "llm" / "requirements.txt"
    plain, with_llm = layer_modules(deps), layer_modules(deps, llm)
    relatives = [path.relative_to(ROOT).as_posix() for path in paths]
    floors = {
        floor: import_ms(floor, plain, bytecode, repeat)[0]
        for floor in sorted(map(_floor, relatives))
    }
    found = []
    for relative in relatives:
        module = relative.removesuffix(".py").replace("/", ".")
        allowed = with_llm if relative in MODEL_CALLERS else plain
        ms, litellm = import_ms(module, allowed, bytecode, repeat)
        found.append(Figure(relative, ms, floors[_floor(relative)], litellm))
    return floors, found


def print_figures(paths: list[Path], repeat: int = 3) -> list[Figure]:
    """Print the figures of ``paths`` (entry point files); return them."""
    with tempfile.TemporaryDirectory(prefix="loom-bytecode-") as bytecode:
        floors, found = figures(paths, bytecode, repeat)
        deps = layer_modules(ROOT / "layers" / "deps" / "requirements.txt")
        powertools = import_ms(POWERTOOLS, deps, bytecode, repeat)[0]
    print(
        f"\ncold import, fresh interpreter, from bytecode, only the Lambda layers importable "
        f"(least of {repeat}); target {TARGET_MS:.0f} ms for functions that do not call models"
    )
    for floor, ms in floors.items():
        print(f"floor of {'functions/api' if floor == API_FLOOR else 'the others'}: "
              f"`import {floor}` {ms:.0f} ms")  # fmt: skip
    print(f"(not counted: every handler imports Powertools on its first call, {powertools:.0f} ms)")
    print(f"{'entry point':<40}{'ms':>8}{'above floor':>13}{'litellm':>9}")
    for figure in found:
        mark = "  over target" if figure.over_target else ""
        model = "  (calls models)" if figure.path in MODEL_CALLERS else ""
        print(
            f"{figure.path:<40}{figure.ms:>8.0f}{figure.ms - figure.floor_ms:>+13.0f}"
            f"{'yes' if figure.litellm else 'no':>9}{mark}{model}"
        )
    return found


def entry_points(folder: str = "") -> list[Path]:
    """The entry point files under ``functions/`` (or one of its folders)."""
    base = ROOT / "functions" / folder
    return sorted(p for p in base.rglob("*.py") if p.name != "__init__.py")
