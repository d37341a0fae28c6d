"""docs/configuration.md documents every setting, so the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

from loom.config import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = alias if isinstance(alias, str) else f"LOOM_{name.upper()}"
        assert f"| `{env}` |" in text, f"{env} is missing from docs/configuration.md"
