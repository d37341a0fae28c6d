"""Lambda entry point for /v1/workflows."""

from loom.api.routes import workflows
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(workflows.router)
