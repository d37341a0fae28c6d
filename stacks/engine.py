"""Engine: what runs workflow DAGs. The ``workflow_run`` state machine (loaded from its ASL
file, with logging and X-Ray), the Advance, node, HIL callback and timeout functions, the
code node's function (outside the VPC, with a role that may only write its logs), the
blob bucket, the KMS key of the credentials vault, and the dead-letter queues."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constants import (
    ASYNC_RETRIES,
    BLOB_BUCKET_ID,
    BLOB_RETENTION_DAYS,
    DLQ_MAX_RECEIVE_COUNT,
    MODEL_CALLERS,
    NODE_FUNCTIONS,
    STATE_MACHINE_FILE,
    STATE_MACHINE_NAME,
)
from stacks.data import DataStack
from stacks.functions import Layers, python_function
from stacks.nag import acknowledge
from stacks.network import NetworkStack


def dead_letter_queue(scope: Construct, construct_id: str) -> sqs.Queue:
    queue = sqs.Queue(
        scope,
        construct_id,
        retention_period=Duration.days(14),
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    acknowledge(queue, "AwsSolutions-SQS3")
    return queue


class EngineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: NetworkStack,
        data: DataStack,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.blob_bucket = s3.Bucket(
            self,
            BLOB_BUCKET_ID,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            removal_policy=RemovalPolicy.RETAIN,
            server_access_logs_prefix="access-logs/",
            lifecycle_rules=[
                s3.LifecycleRule(prefix="runs/", expiration=Duration.days(BLOB_RETENTION_DAYS))
            ],
        )
        self.vault_key = kms.Key(
            self, "VaultKey", enable_key_rotation=True, description="Loom credentials vault"
        )
        self.state_machine_arn = self.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=STATE_MACHINE_NAME,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.layers = Layers(self, "Layers")
        self.function_environment = {
            "LOOM_APP_DATABASE_URL": data.app_database_url(),
            "LOOM_BLOB_BUCKET": self.blob_bucket.bucket_name,
            "LOOM_KMS_KEY_ID": self.vault_key.key_arn,
            "LOOM_STATE_MACHINE_ARN": self.state_machine_arn,
            # The proxy requires IAM auth: loom_app's password is a token signed per 10 min.
            "LOOM_DB_IAM_AUTH": "true",
        }
        self.code_function = self._code_function()
        self.node_functions = {
            node_type: self._engine_function(
                f"Node{module.title().replace('_', '')}",
                f"nodes/{module}.handler",
                network,
                data,
                calls_models=node_type in MODEL_CALLERS,
                timeout=Duration.minutes(15),
            )
            for node_type, module in NODE_FUNCTIONS.items()
        }
        for function in self.node_functions.values():
            self.code_function.grant_invoke(function)
            function.add_environment("LOOM_CODE_FUNCTION", self.code_function.function_name)
        self.hil_timeout = self._engine_function(
            "HilTimeout", "engine/hil_timeout.handler", network, data
        )
        self.advance = self._engine_function(
            "Advance", "engine/advance.handler", network, data, timeout=Duration.minutes(2)
        )
        self.advance.add_environment(
            "LOOM_NODE_FUNCTIONS",
            json.dumps({t: f.function_name for t, f in self.node_functions.items()}),
        )
        self.hil_callback_dlq = dead_letter_queue(self, "HilCallbackDlq")
        self.hil_callback = self._engine_function(
            "HilCallback",
            "engine/hil_callback.handler",
            network,
            data,
            on_failure=destinations.SqsDestination(self.hil_callback_dlq),
            retry_attempts=ASYNC_RETRIES,
        )
        self.state_machine = self._state_machine()
        self.allow_task_response(self.hil_callback)
        self.allow_task_response(self.node_functions["HUMAN_IN_THE_LOOP"])
        self.allow_start(self.advance)
        self.dead_letter_queues = [self.hil_callback_dlq]
        self.max_receive_count = DLQ_MAX_RECEIVE_COUNT

    def _engine_function(
        self,
        construct_id: str,
        handler: str,
        network: NetworkStack,
        data: DataStack,
        **kwargs: Any,
    ) -> lambda_.Function:
        function = python_function(
            self,
            construct_id,
            handler,
            layers=self.layers,
            network=network,
            environment=self.function_environment,
            **kwargs,
        )
        self.blob_bucket.grant_read_write(function)
        self.vault_key.grant_encrypt_decrypt(function)
        data.proxy.grant_connect(function, "loom_app")
        return function

    def _code_function(self) -> lambda_.Function:
        """Runs user code: no VPC, no secrets, a role that may only write its own logs."""
        role = iam.Role(
            self,
            "CodeRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="ACTION.CODE: may write its logs, nothing else",
        )
        function = python_function(
            self,
            "NodeCode",
            "nodes/code.handler",
            layers=self.layers,
            network=None,
            role=role,
            timeout=Duration.minutes(5),
            memory_size=2048,
            tracing=lambda_.Tracing.DISABLED,
        )
        return function

    def _state_machine(self) -> sfn.StateMachine:
        functions = [*self.node_functions.values(), self.advance, self.hil_timeout]
        machine = sfn.StateMachine(
            self,
            "WorkflowRun",
            state_machine_name=STATE_MACHINE_NAME,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(STATE_MACHINE_FILE)),
            definition_substitutions={
                "AdvanceFunctionArn": self.advance.function_arn,
                "HilTimeoutFunctionArn": self.hil_timeout.function_arn,
            },
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(
                    self,
                    "WorkflowRunLogs",
                    log_group_name=f"/aws/vendedlogs/states/{STATE_MACHINE_NAME}",
                    retention=logs.RetentionDays.THREE_MONTHS,
                    removal_policy=RemovalPolicy.DESTROY,
                ),
                level=sfn.LogLevel.ERROR,
                include_execution_data=False,
            ),
        )
        for function in functions:
            function.grant_invoke(machine)
        acknowledge(machine, "AwsSolutions-SF1")
        return machine

    def allow_start(self, grantee: iam.IGrantable) -> None:
        """Start and stop executions of ``workflow_run`` (by its ARN: no reference cycle)."""
        executions = self.state_machine_arn.replace(":stateMachine:", ":execution:") + ":*"
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[self.state_machine_arn]
            )
        )
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=["states:StopExecution"], resources=[executions])
        )

    def allow_task_response(self, grantee: iam.IGrantable) -> None:
        """Send task results to ``workflow_run``'s waiting tasks (what ``grant_task_response``
        grants, by ARN: the state machine refers to the human node's function)."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "states:SendTaskSuccess",
                    "states:SendTaskFailure",
                    "states:SendTaskHeartbeat",
                ],
                resources=[self.state_machine_arn],
            )
        )
