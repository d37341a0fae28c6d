"""Triggers: the EventBridge Scheduler group ``loom`` whose schedules invoke, every
minute, the functions that fire due CRON triggers and drain the intake queue; the
scheduler's role (it may invoke those two, nothing else) and the dead-letter queue of
deliveries and invocations that failed."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct

from stacks.data import DataStack
from stacks.engine import EngineStack, dead_letter_queue
from stacks.functions import Layers, python_function
from stacks.network import NetworkStack

JOBS = {
    "ScheduleFired": "triggers/schedule_fired.handler",
    "Intake": "workers/intake.handler",
}


class TriggersStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: NetworkStack,
        data: DataStack,
        engine: EngineStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        group = scheduler.CfnScheduleGroup(self, "Schedules", name="loom")
        self.dead_letters = dead_letter_queue(self, "JobsDlq")
        role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal("scheduler.amazonaws.com"),
            description="EventBridge Scheduler: invokes Loom's minute jobs",
        )
        self.dead_letters.grant_send_messages(role)
        layers = Layers(self, "Layers")
        self.functions: list[lambda_.Function] = []
        for name, handler in JOBS.items():
            function = python_function(
                self,
                name,
                handler,
                layers=layers,
                network=network,
                environment=engine.function_environment,
                timeout=Duration.minutes(1),
                on_failure=destinations.SqsDestination(self.dead_letters),
                retry_attempts=0,
            )
            engine.blob_bucket.grant_read(function)
            engine.vault_key.grant_encrypt_decrypt(function)
            data.proxy.grant_connect(function, "loom_app")
            engine.allow_start(function)
            function.grant_invoke(role)
            schedule = scheduler.CfnSchedule(
                self,
                f"{name}Every Minute".replace(" ", ""),
                group_name=group.name,
                schedule_expression="rate(1 minute)",
                flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
                target=scheduler.CfnSchedule.TargetProperty(
                    arn=function.function_arn,
                    role_arn=role.role_arn,
                    dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                        arn=self.dead_letters.queue_arn
                    ),
                    retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                        maximum_event_age_in_seconds=60, maximum_retry_attempts=0
                    ),
                ),
            )
            schedule.add_dependency(group)
            self.functions.append(function)
        self.dead_letter_queues = [self.dead_letters]
