"""litellm is imported through ``loom.llm._litellm`` (which sets
LITELLM_LOCAL_MODEL_COST_MAP first, so nothing is fetched at start) and only on the first
call that needs it: importing the gateway costs no litellm. Outside ``loom.llm`` nothing
imports it (the local model's custom provider, inside, is loaded only after)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOM = ROOT / "layers" / "core" / "python" / "loom"
IMPORTS_LITELLM = re.compile(r"^\s*(import\s+litellm\b|from\s+litellm\b)", re.MULTILINE)


def test_nothing_outside_the_gateway_imports_litellm() -> None:
    found = [
        path.relative_to(ROOT)
        for tree in (LOOM, ROOT / "functions")
        for path in tree.rglob("*.py")
        if IMPORTS_LITELLM.search(path.read_text())
    ]
    assert Path("layers/core/python/loom/llm/_litellm.py") in found
    assert all(path.is_relative_to("layers/core/python/loom/llm") for path in found), found


def test_importing_the_gateway_does_not_import_litellm() -> None:
    code = (
        "import sys, loom.llm, loom.llm.gateway, loom.llm.errors, loom.llm.budget; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('litellm', 'openai')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
