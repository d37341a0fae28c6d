"""Api: an HTTP API whose routes go to one function per router group (functions/api),
throttled at the stage, with access logs. The functions hand runs to the engine: they may
start and stop ``workflow_run`` executions and invoke the HIL callback, nothing more of it."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constants import API_MODEL_CALLERS, API_ROUTES, API_THROTTLE_BURST, API_THROTTLE_RATE
from stacks.data import DataStack
from stacks.engine import EngineStack
from stacks.functions import Layers, python_function
from stacks.nag import acknowledge
from stacks.network import NetworkStack


class ApiStack(Stack):
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
        self.http_api = apigw.HttpApi(self, "Http", description="Loom API")
        acknowledge(self.http_api, "AwsSolutions-APIG4")
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        stage = self.http_api.default_stage
        assert stage is not None
        cfn_stage = stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=access_logs.log_group_arn,
            format=json.dumps(
                {
                    "requestId": "$context.requestId",
                    "ip": "$context.identity.sourceIp",
                    "method": "$context.httpMethod",
                    "route": "$context.routeKey",
                    "status": "$context.status",
                    "latency": "$context.responseLatency",
                    "error": "$context.integrationErrorMessage",
                }
            ),
        )
        cfn_stage.default_route_settings = apigw.CfnStage.RouteSettingsProperty(
            throttling_rate_limit=API_THROTTLE_RATE, throttling_burst_limit=API_THROTTLE_BURST
        )
        layers = Layers(self, "Layers")
        environment = {
            **engine.function_environment,
            "LOOM_HIL_CALLBACK_FUNCTION": engine.hil_callback.function_name,
            "LOOM_TRUSTED_PROXIES": "1",
        }
        self.functions = {}
        for module, paths in API_ROUTES.items():
            function = python_function(
                self,
                f"Api{module.title().replace('_', '')}",
                f"api/{module}.handler",
                layers=layers,
                network=network,
                environment=environment,
                calls_models=module in API_MODEL_CALLERS,
            )
            engine.blob_bucket.grant_read(function)
            engine.vault_key.grant_encrypt_decrypt(function)
            data.proxy.grant_connect(function, "loom_app")
            engine.allow_start(function)
            engine.hil_callback.grant_invoke(function)
            integration = integrations.HttpLambdaIntegration(f"{module}Integration", function)
            for path in paths:
                self.http_api.add_routes(
                    path=path, methods=[apigw.HttpMethod.ANY], integration=integration
                )
            self.functions[module] = function
