"""Data: Aurora Serverless v2 PostgreSQL 16 (pgvector is built in), an RDS Proxy that
functions reach with IAM auth end to end (as ``loom_app``, no password), the owner's
credentials in Secrets Manager, and the migrations run by a custom resource on every
deploy (safe to repeat: they are recorded)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.constants import APP_ROLE, DATABASE_NAME
from stacks.functions import Layers, python_function
from stacks.nag import acknowledge
from stacks.network import NetworkStack


class DataStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, network: NetworkStack, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.cluster = rds.DatabaseCluster(
            self,
            "Aurora",
            engine=rds.DatabaseClusterEngine.aurora_postgres(
                version=rds.AuroraPostgresEngineVersion.VER_16_13
            ),
            credentials=rds.Credentials.from_generated_secret("loom_owner"),
            default_database_name=DATABASE_NAME,
            writer=rds.ClusterInstance.serverless_v2("writer"),
            readers=[rds.ClusterInstance.serverless_v2("reader", scale_with_writer=True)],
            serverless_v2_min_capacity=0.5,
            serverless_v2_max_capacity=16,
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            storage_encrypted=True,
            iam_authentication=True,
            deletion_protection=True,
            backup=rds.BackupProps(retention=Duration.days(14)),
            cloudwatch_logs_exports=["postgresql"],
            monitoring_interval=Duration.seconds(60),
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        acknowledge(self.cluster.node.find_child("Secret"), "AwsSolutions-SMG4")
        # End-to-end IAM auth: functions connect as loom_app with IAM auth tokens, and the
        # proxy reaches Aurora as loom_app with IAM too (the migrations grant it rds_iam),
        # so loom_app has no password anywhere.
        proxy_role = iam.Role(
            self,
            "ProxyRole",
            assumed_by=iam.ServicePrincipal("rds.amazonaws.com"),
            description="RDS Proxy: connects to Aurora as loom_app with IAM auth",
        )
        self.cluster.grant_connect(proxy_role, APP_ROLE)
        self.proxy = self.cluster.add_proxy(
            "Proxy",
            secrets=[self.cluster.secret] if self.cluster.secret else [],
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            iam_auth=True,
            default_auth_scheme=rds.DefaultAuthScheme.IAM_AUTH,
            role=proxy_role,
            require_tls=True,
        )
        self.cluster.connections.allow_default_port_from(network.functions_sg, "Loom functions")
        self.proxy.connections.allow_from(
            network.functions_sg, ec2.Port.tcp(5432), "Loom functions"
        )
        layers = Layers(self, "Layers")
        migrate = python_function(
            self,
            "Migrate",
            "workers/migrate.handler",
            layers=layers,
            network=network,
            timeout=Duration.minutes(10),
            environment={"LOOM_DATABASE_SECRET_ARN": self.cluster.secret.secret_arn}
            if self.cluster.secret
            else {},
        )
        if self.cluster.secret:
            self.cluster.secret.grant_read(migrate)
        provider = cr.Provider(self, "MigrationsProvider", on_event_handler=migrate)
        migrations = CustomResource(
            self,
            "Migrations",
            service_token=provider.service_token,
            properties={"layer": layers.core.layer_version_arn},
        )
        migrations.node.add_dependency(self.cluster)
        self.migrate: lambda_.Function = migrate
        self.endpoint = self.proxy.endpoint

    def app_database_url(self) -> str:
        return f"postgresql://loom_app@{self.endpoint}:5432/{DATABASE_NAME}?sslmode=require"
