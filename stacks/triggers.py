"""Triggers: the EventBridge Scheduler group ``loom`` whose schedules invoke, every
minute, the functions that fire due CRON triggers, drain the intake queue and start
stranded runs (committed, never handed to Step Functions), and every 15 minutes the one
that examines agents which became ready for their next level; the scheduler's role (it
may invoke those four, nothing else) and the dead-letter queue of deliveries and
invocations that failed.

Also: the group ``loom-triggers`` of one schedule per deployed CRON trigger (made and
removed at run time by the API functions that deploy; they invoke ``ScheduleFired``),
and the SQS intake queue of trigger events that wait or are retried, with its DLQ, its
consumer (partial batch responses) and the redrive worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_ses as ses
from aws_cdk import aws_ses_actions as ses_actions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.api import ApiStack
from stacks.constants import ASYNC_RETRIES, DLQ_MAX_RECEIVE_COUNT
from stacks.data import DataStack
from stacks.engine import EngineStack, dead_letter_queue
from stacks.functions import Layers, python_function
from stacks.network import NetworkStack


@dataclass(frozen=True)
class Job:
    handler: str
    every_minutes: int = 1
    timeout_minutes: int = 1
    calls_models: bool = False

    @property
    def schedule_id(self) -> str:
        return "EveryMinute" if self.every_minutes == 1 else f"Every{self.every_minutes}Minutes"

    @property
    def expression(self) -> str:
        unit = "minute" if self.every_minutes == 1 else "minutes"
        return f"rate({self.every_minutes} {unit})"


# Graduation exams call models and may take minutes each (loom.agents.exam_worker starts
# none that could outlive the function's 15 minutes).
EXAM_JOB = Job("workers/exams.handler", every_minutes=15, timeout_minutes=15, calls_models=True)
# The intake consumer's timeout; the queue's visibility timeout is six times it.
INTAKE_TIMEOUT_SECONDS = 60
TRIGGER_SCHEDULE_GROUP = "loom-triggers"
# API functions that deploy, publish or delete workflows, and so keep schedules in step.
DEPLOYERS = ("triggers", "workflows", "mcp", "builder")
# Context flag: receive mail for TRIGGER.EMAIL with SES at this domain (off when unset).
INBOUND_MAIL = "loom:inboundMailDomain"
MAIL_PREFIX = "inbound/"  # where the receipt rule stores messages (loom.runtime.aws.mail)
MAIL_RETENTION_DAYS = 30
JOBS = {
    "ScheduleFired": Job("triggers/schedule_fired.handler"),
    "Intake": Job("workers/intake.handler"),
    "StrandedRuns": Job("workers/stranded_runs.handler"),
    "Exams": EXAM_JOB,
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
        api: ApiStack,
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
        jobs: dict[str, lambda_.Function] = {}
        for name, job in JOBS.items():
            function = python_function(
                self,
                name,
                job.handler,
                layers=layers,
                network=network,
                environment=engine.function_environment,
                calls_models=job.calls_models,
                timeout=Duration.minutes(job.timeout_minutes),
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
                f"{name}{job.schedule_id}",
                group_name=group.name,
                schedule_expression=job.expression,
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
            jobs[name] = function
        self.dead_letter_queues = [self.dead_letters]
        self._intake(network, data, engine, api, layers, fired=jobs["ScheduleFired"])
        self._trigger_schedules(api, role, fired=jobs["ScheduleFired"])
        domain = self.node.try_get_context(INBOUND_MAIL)
        if domain:
            self._inbound_mail(str(domain), network, data, engine, api, layers)

    def _intake(
        self,
        network: NetworkStack,
        data: DataStack,
        engine: EngineStack,
        api: ApiStack,
        layers: Layers,
        *,
        fired: lambda_.Function,
    ) -> None:
        """The SQS intake queue of trigger events that wait or are retried, its DLQ, the
        consumer (partial batch responses), and the redrive worker (run by an operator:
        redriving by itself would loop a poison message forever)."""
        self.intake_dlq = dead_letter_queue(self, "IntakeDlq")
        self.intake_queue = sqs.Queue(
            self,
            "IntakeQueue",
            visibility_timeout=Duration.seconds(6 * INTAKE_TIMEOUT_SECONDS),
            retention_period=Duration.days(4),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=DLQ_MAX_RECEIVE_COUNT, queue=self.intake_dlq
            ),
        )
        intake = {
            "LOOM_INTAKE_QUEUE_URL": self.intake_queue.queue_url,
            "LOOM_INTAKE_MAX_ATTEMPTS": str(DLQ_MAX_RECEIVE_COUNT),
        }
        consumer = python_function(
            self,
            "IntakeConsumer",
            "triggers/intake_consumer.handler",
            layers=layers,
            network=network,
            environment={**engine.function_environment, **intake},
            timeout=Duration.seconds(INTAKE_TIMEOUT_SECONDS),
        )
        consumer.add_event_source(
            event_sources.SqsEventSource(
                self.intake_queue,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                report_batch_item_failures=True,
            )
        )
        self.intake_queue.grant_send_messages(consumer)  # a waiting event is sent again
        engine.blob_bucket.grant_read(consumer)
        engine.vault_key.grant_encrypt_decrypt(consumer)
        data.proxy.grant_connect(consumer, "loom_app")
        engine.allow_start(consumer)
        redrive = python_function(
            self,
            "IntakeRedrive",
            "workers/redrive.handler",
            layers=layers,
            network=None,  # only SQS: no database, no VPC
            environment={**intake, "LOOM_INTAKE_DLQ_URL": self.intake_dlq.queue_url},
            timeout=Duration.minutes(5),
        )
        self.intake_dlq.grant_consume_messages(redrive)
        self.intake_queue.grant_send_messages(redrive)
        # Who sends: the hooks (waiting or failed events, replayed dead letters) and the
        # schedules (a fire that must wait or be retried).
        for function in (api.functions["triggers"], fired):
            for name, value in intake.items():
                function.add_environment(name, value)
            self.intake_queue.grant_send_messages(function)
        self.functions += [consumer, redrive]
        self.dead_letter_queues.append(self.intake_dlq)

    def _trigger_schedules(self, api: ApiStack, role: iam.Role, *, fired: lambda_.Function) -> None:
        """One EventBridge schedule per deployed CRON trigger, in their own group, kept in
        step by the API functions that deploy, publish and delete workflows."""
        scheduler.CfnScheduleGroup(self, "TriggerSchedules", name=TRIGGER_SCHEDULE_GROUP)
        environment = {
            "LOOM_SCHEDULE_GROUP": TRIGGER_SCHEDULE_GROUP,
            "LOOM_SCHEDULE_TARGET_ARN": fired.function_arn,
            "LOOM_SCHEDULE_ROLE_ARN": role.role_arn,
            "LOOM_SCHEDULE_DLQ_ARN": self.dead_letters.queue_arn,
        }
        schedules = self.format_arn(
            service="scheduler",
            resource="schedule",
            resource_name=f"{TRIGGER_SCHEDULE_GROUP}/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        for module in DEPLOYERS:
            function = api.functions[module]
            for name, value in environment.items():
                function.add_environment(name, value)
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=[
                        "scheduler:CreateSchedule",
                        "scheduler:UpdateSchedule",
                        "scheduler:DeleteSchedule",
                    ],
                    resources=[schedules],
                )
            )
            role.grant_pass_role(function.grant_principal)

    def _inbound_mail(
        self,
        domain: str,
        network: NetworkStack,
        data: DataStack,
        engine: EngineStack,
        api: ApiStack,
        layers: Layers,
    ) -> None:
        """SES receives mail for ``domain``: a receipt rule stores each message in a
        private bucket, then invokes the mail function with its envelope. (Make the rule
        set active once: ``aws ses set-active-receipt-rule-set``; CloudFormation cannot.)"""
        bucket = s3.Bucket(
            self,
            "Mail",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=RemovalPolicy.RETAIN,
            server_access_logs_prefix="access-logs/",
            lifecycle_rules=[
                s3.LifecycleRule(prefix=MAIL_PREFIX, expiration=Duration.days(MAIL_RETENTION_DAYS))
            ],
        )
        received = python_function(
            self,
            "MailReceived",
            "triggers/mail_received.handler",
            layers=layers,
            network=network,
            environment={
                **engine.function_environment,
                "LOOM_INTAKE_QUEUE_URL": self.intake_queue.queue_url,
                "LOOM_INTAKE_MAX_ATTEMPTS": str(DLQ_MAX_RECEIVE_COUNT),
                "LOOM_MAIL_BUCKET": bucket.bucket_name,
                "LOOM_MAIL_DOMAIN": domain,
            },
            on_failure=destinations.SqsDestination(self.dead_letters),
            retry_attempts=ASYNC_RETRIES,
        )
        bucket.grant_read(received)
        self.intake_queue.grant_send_messages(received)
        data.proxy.grant_connect(received, "loom_app")
        engine.allow_start(received)
        api.functions["triggers"].add_environment("LOOM_MAIL_DOMAIN", domain)  # addresses
        ses.ReceiptRuleSet(
            self,
            "MailRules",
            rules=[
                ses.ReceiptRuleOptions(
                    recipients=[domain],
                    scan_enabled=True,
                    tls_policy=ses.TlsPolicy.REQUIRE,
                    actions=[
                        ses_actions.S3(bucket=bucket, object_key_prefix=MAIL_PREFIX),
                        ses_actions.Lambda(
                            function=received,
                            invocation_type=ses_actions.LambdaInvocationType.EVENT,
                        ),
                    ],
                )
            ],
        )
        self.functions.append(received)
