#!/usr/bin/env python3
"""CDK app. Synthesizes offline: no AWS credentials, no lookups, no Docker."""

from __future__ import annotations

import os

# jsii warns on every start that Node 20 is past end of life; the synth does not depend
# on it, and the warning drowns the output.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import aws_cdk as cdk

from stacks.constants import SERVICE_NAME
from stacks.engine import EngineStack


def build_app() -> cdk.App:
    app = cdk.App()
    EngineStack(app, "LoomEngine", description="Loom workflow engine")
    cdk.Tags.of(app).add("service", SERVICE_NAME)
    return app


if __name__ == "__main__":
    build_app().synth()
