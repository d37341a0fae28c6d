"""Lambda entry point for /v1/nodes."""

from loom.api.routes import nodes
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(nodes.router)
