"""Engine stack: what runs workflow DAGs. Today it holds the blob bucket that node
outputs over the Step Functions payload limit go to; the state machine and node functions
join it with the serverless work."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.constants import BLOB_BUCKET_ID, BLOB_RETENTION_DAYS


class EngineStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.blob_bucket = s3.Bucket(
            self,
            BLOB_BUCKET_ID,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(prefix="runs/", expiration=Duration.days(BLOB_RETENTION_DAYS))
            ],
        )
