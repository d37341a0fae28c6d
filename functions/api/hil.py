"""Lambda entry point for the hil routes."""

from loom.api.routes import hil
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(hil.router, hil.links)
