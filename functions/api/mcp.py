"""Lambda entry point for the mcp routes."""

from loom.api.routes import mcp
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(mcp.router)
