"""Imports every built-in node module, which registers its spec."""

from loom.nodes import (  # noqa: F401
    code,
    flow_filter,
    flow_if,
    flow_loop,
    flow_merge,
    flow_switch,
    flow_wait,
    http_request,
    transform,
    trigger_manual,
)
