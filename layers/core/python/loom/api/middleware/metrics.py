"""Per-route metrics and one access-log line per request.

Requests are labelled by method and route template (``GET /v1/runs/{run_id}``), never by
raw path, so ids do not explode the label set and nothing from the URL's values, query
string, headers or body reaches a log line. The request id comes from the log filter.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

from fastapi.routing import iter_route_contexts
from starlette.routing import Router, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom.api.middleware._asgi import route_path

log = logging.getLogger("loom.access")

UNMATCHED = "<unmatched>"
# (path regex, template, methods or None for any)
_Entry = tuple[re.Pattern[str], str, frozenset[str] | None]
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class RouteStats:
    count: int
    errors_4xx: int
    errors_5xx: int
    p50_ms: float
    p99_ms: float


class _Route:
    def __init__(self, window: int) -> None:
        self.count = 0
        self.errors_4xx = 0
        self.errors_5xx = 0
        self.durations: deque[float] = deque(maxlen=window)

    def stats(self) -> RouteStats:
        ordered = sorted(self.durations)
        return RouteStats(
            self.count, self.errors_4xx, self.errors_5xx, _rank(ordered, 0.50), _rank(ordered, 0.99)
        )


def _rank(ordered: list[float], quantile: float) -> float:
    """Nearest-rank percentile; 0.0 with no samples."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(quantile * len(ordered)) - 1)]


class RouteMetrics:
    """Counts per route template, and latency percentiles over the last ``window`` requests."""

    def __init__(self, window: int = 1024) -> None:
        self.window = window
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()

    def record(self, route: str, status: int, duration_ms: float) -> None:
        with self._lock:
            entry = self._routes.get(route)
            if entry is None:
                entry = self._routes[route] = _Route(self.window)
            entry.count += 1
            entry.errors_4xx += 400 <= status < 500
            entry.errors_5xx += status >= 500
            entry.durations.append(duration_ms)

    def snapshot(self) -> dict[str, RouteStats]:
        with self._lock:
            return {route: entry.stats() for route, entry in self._routes.items()}


class RouteTemplates:
    """The route template of a request.

    After routing, the router has put the matched route in the scope: its template is
    looked up by the route. A request a middleware answered before routing (413, 429) is
    matched the way the router would, against every template with its included routers'
    prefixes. Both tables are built on first use, once the app's routes are all in.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self._table: list[_Entry] | None = None
        self._by_route: dict[int, str | None] = {}

    def _build(self) -> list[_Entry]:
        table: list[_Entry] = []
        for context in iter_route_contexts(self.router.routes):
            if context.path is None:
                continue
            regex, template, _ = compile_path(context.path)
            methods = frozenset(context.methods) if context.methods else None
            table.append((regex, template, methods))
            # A route mounted under two prefixes has no one template: matched instead.
            known = id(context.original_route)
            self._by_route[known] = None if known in self._by_route else template
        return table

    def match(self, scope: Scope) -> str:
        if self._table is None:
            self._table = self._build()
        routed = self._by_route.get(id(scope.get("route")))
        if routed is not None:
            return routed
        path = route_path(scope)
        partial: str | None = None
        for regex, template, methods in self._table:
            if not regex.match(path):
                continue
            if methods is None or scope["method"] in methods:
                return template
            partial = partial or template
        return partial or UNMATCHED


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, *, router: Router, metrics: RouteMetrics) -> None:
        self.app = app
        self.templates = RouteTemplates(router)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 500
        started = time.perf_counter()

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except Exception:
            status = 500
            raise
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            template = self.templates.match(scope)
            self.metrics.record(f"{method} {template}", status, duration_ms)
            log.info(
                "request method=%s route=%s status=%d duration_ms=%.1f",
                method,
                template,
                status,
                duration_ms,
                extra={
                    "http_method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(duration_ms, 1),
                },
            )
