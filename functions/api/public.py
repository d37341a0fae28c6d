"""Lambda entry point for /v1/public (health)."""

from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for()
