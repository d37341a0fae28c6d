"""Lambda entry point for the api_keys routes."""

from loom.api.routes import api_keys
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(api_keys.router)
