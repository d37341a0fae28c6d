"""Imports every built-in node module, which registers its spec."""

from loom.nodes import (  # noqa: F401
    flow_filter,
    flow_if,
    flow_loop,
    flow_merge,
    flow_switch,
    flow_wait,
    transform,
    trigger_manual,
)
