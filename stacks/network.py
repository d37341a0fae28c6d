"""Network: a VPC with private subnets for the functions and the database, one NAT
gateway for model-provider and integration egress, and endpoints for the AWS services the
functions call, so that traffic to them stays inside the VPC."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

INTERFACE_ENDPOINTS = {
    "StepFunctions": ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
    "Lambda": ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
    "SecretsManager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "Sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "XRay": ec2.InterfaceVpcEndpointAwsService.XRAY,
}


class NetworkStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
                ),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            ],
            flow_logs={"all": ec2.FlowLogOptions()},
        )
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        self.functions_sg = ec2.SecurityGroup(
            self, "Functions", vpc=self.vpc, description="Loom functions in the VPC"
        )
        endpoints_sg = ec2.SecurityGroup(
            self,
            "Endpoints",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="AWS service endpoints: HTTPS from Loom functions only",
        )
        endpoints_sg.add_ingress_rule(self.functions_sg, ec2.Port.tcp(443), "Loom functions")
        for name, service in INTERFACE_ENDPOINTS.items():
            self.vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                open=False,
                security_groups=[endpoints_sg],
            )
        self.app_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.data_subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
