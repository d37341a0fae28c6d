"""What a Lambda entry point (``functions/``) imports at cold start: only what it uses.

No entry point imports litellm (the model callers import it on their first model call);
the functions that never call out over HTTP import no HTTP client; the node functions
import neither the model gateway nor the agent runtime, nor an HTTP client before a node
needs one; the code function and redrive, which have no database, import no driver;
building one function's API imports no other router; and a node type's spec loads its own
module, not every node module. Each check imports in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import loom.net
from loom.nodes.registry import BUILTIN, all_specs

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = sorted(
    p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    for p in (ROOT / "functions").rglob("*.py")
    if p.name != "__init__.py"
)
# Neither plans nor runs anything that calls out over HTTP (boto3 does not use httpx).
NO_HTTP = [
    "functions.engine.advance",
    "functions.engine.hil_callback",
    "functions.engine.hil_timeout",
    "functions.nodes.code",
    "functions.triggers.intake_consumer",
    "functions.triggers.mail_received",
    "functions.triggers.schedule_fired",
    "functions.workers.intake",
    "functions.workers.migrate",
    "functions.workers.redrive",
    "functions.workers.stranded_runs",
]
NO_DATABASE = ["functions.nodes.code", "functions.workers.redrive"]
# Build the model gateway (AI_AGENT's) on their first invocation, the agent runtime when an
# agent first runs; HTTP_REQUEST's module brings httpx with the first workflow that has one.
NODE_FUNCTIONS = [
    "functions.nodes.action",
    "functions.nodes.ai_agent",
    "functions.nodes.external_action",
    "functions.nodes.flow",
    "functions.nodes.human_in_the_loop",
]

_BROUGHT = """
import importlib, json, sys
found = {}
for name in sys.argv[1:]:
    before = set(sys.modules)
    importlib.import_module(name)
    found[name] = sorted(set(sys.modules) - before)
print(json.dumps(found))
"""


def brought(*modules: str) -> dict[str, set[str]]:
    """Per module, imported one after another in a fresh interpreter: what it added."""
    out = subprocess.run(
        [sys.executable, "-c", _BROUGHT, *modules],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return {name: set(found) for name, found in json.loads(out.stdout).items()}


def run(code: str) -> Any:
    """What ``code``, run in a fresh interpreter, prints (a Python literal)."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return ast.literal_eval(out.stdout.strip())


def culprits(found: dict[str, set[str]], *packages: str) -> dict[str, list[str]]:
    return {
        module: sorted(p for p in packages if p in added)
        for module, added in found.items()
        if any(p in added for p in packages)
    }


def test_no_entry_point_imports_litellm() -> None:
    assert culprits(brought(*ENTRY_POINTS), "litellm", "openai") == {}


def test_functions_that_never_call_out_import_no_http_client() -> None:
    assert culprits(brought(*NO_HTTP), "httpx", "httpcore", "aiosmtplib", "mcp") == {}


def test_node_functions_import_models_agents_and_http_only_when_a_node_needs_them() -> None:
    packages = ("loom.llm.gateway", "loom.agents.runtime", "httpx")
    assert culprits(brought(*NODE_FUNCTIONS), *packages) == {}


def test_functions_without_a_database_import_no_driver() -> None:
    for module in NO_DATABASE:  # one interpreter each: neither may lean on the other
        assert culprits(brought(module), "psycopg", "psycopg_pool") == {}


def test_building_an_app_imports_no_router_but_its_own() -> None:
    code = (
        "import sys; from loom.api.app import create_app; from loom.api.routes import runs; "
        "create_app(lambda: None, routers=(runs.router,)); "
        "print(sorted(m for m in sys.modules if m.startswith('loom.api.routes.')))"
    )
    assert run(code) == ["loom.api.routes.runs"]


def test_a_spec_loads_its_own_node_module_only() -> None:
    code = (
        "import sys; from loom.nodes.registry import get_spec; "
        "get_spec('FLOW', 'IF'); get_spec('HUMAN_IN_THE_LOOP', 'APPROVAL'); "
        "print(sorted(m for m in sys.modules if m.startswith(('loom.nodes.', 'httpx'))))"
    )
    assert run(code) == [
        "loom.nodes.base",
        "loom.nodes.flow_if",
        "loom.nodes.human",
        "loom.nodes.human_channels",
        "loom.nodes.registry",
    ]


def test_each_built_in_type_names_the_module_that_registers_it() -> None:
    specs = {spec.key: spec for spec in all_specs() if spec.key in BUILTIN}
    assert set(specs) == set(BUILTIN)
    assert {key: spec.parameters.__module__ for key, spec in specs.items()} == BUILTIN
    built_in = {s.key for s in all_specs() if s.parameters.__module__.startswith("loom.")}
    assert built_in == set(BUILTIN)


def test_loom_net_exports_what_it_maps() -> None:
    assert sorted(loom.net._MODULES) == sorted(loom.net.__all__)
