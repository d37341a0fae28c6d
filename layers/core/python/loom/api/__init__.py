"""The HTTP API: an app factory and one router per area, each mountable alone."""

from loom.api.app import create_app

__all__ = ["create_app"]
