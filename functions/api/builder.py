"""Lambda entry point for /v1/builder and POST /v1/runs/{run_id}/explain (both call models,
so they share the one API function with the litellm layer)."""

from loom.api.routes import builder
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(builder.router, builder.explain_router)
