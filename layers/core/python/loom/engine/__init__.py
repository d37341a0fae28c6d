"""The execution engine: ``advance()`` (record + plan), shared by both engines, and the
local runner that drives it in-process."""
