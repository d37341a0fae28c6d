import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


@pytest.fixture(scope="session")
def templates() -> dict[str, dict[str, object]]:
    """Every stack's template, from one synth of the app (cdk-nag included) per session:
    synth is slow."""
    from app import build_app

    assembly = build_app({"loom:skipBundling": True}).synth()
    return {
        stack.stack_name: json.loads(Path(stack.template_full_path).read_text())
        for stack in assembly.stacks
    }
