"""Lambda entry point for the workspaces routes."""

from loom.api.routes import workspaces
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(workspaces.router)
