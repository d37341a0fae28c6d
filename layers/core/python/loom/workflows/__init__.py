"""Workflow definitions: the model, validation, versions and diffs."""
