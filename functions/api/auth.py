"""Lambda entry point for the auth routes."""

from loom.api.routes import auth
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(auth.router)
