"""Lambda entry point for the credentials routes."""

from loom.api.routes import credentials
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(credentials.router)
