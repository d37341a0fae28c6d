"""Observability: alarms on dead-letter depth, failed and timed-out executions, Lambda
errors and throttles and Aurora load, and one dashboard of them."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.data import DataStack
from stacks.engine import EngineStack


class ObservabilityStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        engine: EngineStack,
        data: DataStack,
        functions: list[lambda_.Function],
        queues: list[sqs.Queue],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        period = Duration.minutes(5)
        self.alarms: list[cloudwatch.Alarm] = []
        for index, queue in enumerate(queues):
            self._alarm(
                f"DeadLetters{index}",
                queue.metric_approximate_number_of_messages_visible(period=period),
                threshold=1,
            )
        machine = engine.state_machine
        self._alarm("ExecutionsFailed", machine.metric_failed(period=period), threshold=1)
        self._alarm("ExecutionsTimedOut", machine.metric_timed_out(period=period), threshold=1)
        for index, function in enumerate(functions):
            self._alarm(f"Errors{index}", function.metric_errors(period=period), threshold=5)
            self._alarm(f"Throttles{index}", function.metric_throttles(period=period), threshold=1)
        self._alarm("AuroraCpu", data.cluster.metric_cpu_utilization(period=period), threshold=80)
        self._alarm(
            "AuroraCapacity",
            data.cluster.metric("ACUUtilization", period=period, statistic="Maximum"),
            threshold=90,
        )
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name="loom")
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(alarms=self.alarms, title="Loom alarms", width=24)
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Executions",
                left=[
                    machine.metric_started(),
                    machine.metric_succeeded(),
                    machine.metric_failed(),
                ],
            ),
            cloudwatch.GraphWidget(title="Aurora", left=[data.cluster.metric_cpu_utilization()]),
        )

    def _alarm(self, name: str, metric: cloudwatch.IMetric, threshold: float) -> None:
        self.alarms.append(
            cloudwatch.Alarm(
                self,
                name,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )
