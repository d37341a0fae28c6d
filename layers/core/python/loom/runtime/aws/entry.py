"""What every Lambda entry point shares: Powertools logging (JSON, on the ``loom`` logger
every Loom module logs under), X-Ray tracing and metrics, a correlation id per invocation,
and the environment validated on the first invocation - a bad one fails that invocation
with one ``ConfigError`` naming the variable, not the import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "loom"
NAMESPACE = "Loom"
RUN_ID = "run_id"

Handler = Callable[[dict[str, Any], Any], Any]
Handle = Callable[[Mapping[str, Any]], Any]


@cache
def powertools() -> tuple[Logger, Tracer, Metrics]:
    """Powertools' logger, tracer and metrics, made on the first invocation: importing an
    entry point (a test, a cold-import bench) configures no logging, and a cold start
    does not pay for the tracer before it is needed."""
    from aws_lambda_powertools import Logger, Metrics, Tracer

    return (
        Logger(service=SERVICE),
        Tracer(service=SERVICE),
        Metrics(namespace=NAMESPACE, service=SERVICE),
    )


def observed(name: str, handle: Handler, correlation_id_path: str) -> Handler:
    """``handle`` as a Lambda handler with logs, traces and metrics, built on first call."""
    built: list[Handler] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        if not built:
            built.append(_decorated(name, handle, correlation_id_path))
        return built[0](event, context)

    return handler


def _decorated(name: str, handle: Handler, correlation_id_path: str) -> Handler:
    from aws_lambda_powertools.metrics import MetricUnit

    logger, tracer, metrics = powertools()

    @metrics.log_metrics(raise_on_empty_metrics=False)
    @tracer.capture_lambda_handler(capture_response=False)
    @logger.inject_lambda_context(correlation_id_path=correlation_id_path, clear_state=True)
    def handler(event: dict[str, Any], context: Any) -> Any:
        logger.append_keys(function=name)
        metrics.add_metric(name=f"{name}.invocations", unit=MetricUnit.Count, value=1)
        return handle(event, context)

    wrapped: Handler = handler
    return wrapped


def entry_point(name: str, handle: Handle, correlation_id_path: str = RUN_ID) -> Handler:
    """A Lambda handler for ``handle``; ``name`` tags its logs and metrics."""
    return observed(name, lambda event, context: handle(event), correlation_id_path)
