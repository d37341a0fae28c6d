"""Lambda entry point for the trigger routes: deployments, dead letters, and webhooks."""

from loom.api.routes import triggers
from loom.runtime.aws.api import lambda_handler_for

handler = lambda_handler_for(triggers.router, triggers.hooks)
