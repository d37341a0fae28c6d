"""The HTTP middleware stack, pure ASGI so event streams pass through unbuffered.

Outermost first:

1. request id - so every reply, even a 413 or a 429, carries it and logs are tagged;
2. metrics and access log - sees the final status of everything below;
3. security headers - on every reply, including refusals and CORS preflights;
4. CORS (only with configured origins) - so browser code can read 413/429 replies;
5. rate limits - cheap refusals before any body is read;
6. body limit and decompression;
7. unhandled errors - a handler's crash becomes the app's 500 reply inside the stack.
"""

from __future__ import annotations

from fastapi import FastAPI

from loom.api.middleware.body_limit import BodyLimitMiddleware
from loom.api.middleware.cors import LoomCORSMiddleware
from loom.api.middleware.metrics import MetricsMiddleware, RouteMetrics, RouteStats
from loom.api.middleware.rate_limit import RateLimitMiddleware
from loom.api.middleware.request_id import RequestIdMiddleware
from loom.api.middleware.security_headers import SecurityHeadersMiddleware
from loom.api.middleware.unhandled import UnhandledErrorMiddleware
from loom.config import HttpSettings

__all__ = ["RouteMetrics", "RouteStats", "install_middleware"]


def install_middleware(app: FastAPI, settings: HttpSettings) -> RouteMetrics:
    """Install the stack on ``app`` (after its error handlers) and return its metrics,
    also kept as ``app.state.metrics``."""
    handler = app.exception_handlers.get(Exception)
    if handler is None:
        raise RuntimeError("install_error_handlers(app) must run before install_middleware")
    metrics = RouteMetrics()
    app.state.metrics = metrics
    # Each add_middleware wraps the ones added before it: this adds innermost first.
    app.add_middleware(UnhandledErrorMiddleware, handler=handler)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        per_credential=settings.rate_limit_per_minute,
        per_address=settings.ip_rate_limit_per_minute,
        public_per_address=settings.public_rate_limit_per_minute,
        trusted_proxies=settings.trusted_proxies,
        per_trigger=settings.webhook_rate_limit_per_minute,
    )
    if settings.cors_origins:
        app.add_middleware(LoomCORSMiddleware, origins=settings.cors_origins)
    app.add_middleware(
        SecurityHeadersMiddleware, swagger_path=app.docs_url, redoc_path=app.redoc_url
    )
    app.add_middleware(MetricsMiddleware, router=app.router, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    return metrics
