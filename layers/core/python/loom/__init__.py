"""Loom: AI workflows and governed AI agents, on AWS serverless or one laptop."""

__version__ = "0.1.0"
