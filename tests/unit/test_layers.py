"""The Lambda dependency layer installs exactly the runtime dependencies of the project."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_deps_layer_matches_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = (ROOT / "layers" / "deps" / "requirements.txt").read_text().splitlines()
    layer = [line for line in lines if line and not line.startswith("#")]
    assert layer == declared


def test_llm_layer_matches_the_ai_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    lines = (ROOT / "layers" / "llm" / "requirements.txt").read_text().splitlines()
    layer = [line for line in lines if line and not line.startswith("#")]
    assert layer == extras["ai"]
