"""Lambda entry point for /v1/runs."""

from loom.api.routes import runs
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(runs.router)
