"""cdk-nag's AwsSolutions pack on every stack, with the findings Loom accepts and why.

Rules are acknowledged on the constructs they concern (``acknowledge``), with CDK's native
acknowledgements (cdk-nag 3). Findings of rules that report one per permission (IAM4,
IAM5) carry construct ids and cross-stack export names known only at synth: those are
accepted by pattern, each with its reason, by a plugin that wraps the pack and drops
exactly those findings from its report.
"""

from __future__ import annotations

import re

import aws_cdk as cdk
import jsii
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

REASONS = {
    "AwsSolutions-APIG4": "Authorization is the application's: JWT bearer tokens and API keys "
    "with scopes are checked by the API itself (loom.auth); /v1/public and webhooks are "
    "public by design (webhooks verify an HMAC signature).",
    "AwsSolutions-L1": "The project runs on Python 3.11 everywhere (pyproject, layers, tests); "
    "the runtime moves with the project, not ahead of it.",
    "AwsSolutions-SF1": "Logging ALL would copy every state's input and output to CloudWatch; "
    "ERROR is kept, and each run's full history is in Postgres (run_events).",
    "AwsSolutions-SQS3": "This queue is a dead-letter queue itself.",
    "AwsSolutions-SMG4": "The owner secret is used only by the migrations on deploy; rotating "
    "it is an operator step (docs/deploy.md), not a scheduled one.",
}

_MANAGED = r"Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
FINDINGS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            rf"^AwsSolutions-IAM4\[{_MANAGED}(AWSLambdaBasicExecutionRole|"
            r"AWSLambdaVPCAccessExecutionRole|AmazonRDSEnhancedMonitoringRole)\]$"
        ),
        "The minimal AWS managed policies for a function's logs and network interfaces, and "
        "for Aurora's enhanced monitoring.",
    ),
    (
        re.compile(
            r"^AwsSolutions-IAM5\[Action::s3:(GetObject|GetBucket|List|DeleteObject|Abort)\*\]$"
        ),
        "grant_read/grant_read_write on the one blob bucket: objects are keyed by workspace "
        "and run, created at run time.",
    ),
    (
        re.compile(r"^AwsSolutions-IAM5\[Action::kms:(GenerateDataKey|ReEncrypt)\*\]$"),
        "grant_encrypt_decrypt on the one vault key.",
    ),
    (
        re.compile(r"^AwsSolutions-IAM5\[Resource::\*\]$"),
        "X-Ray's PutTraceSegments/PutTelemetryRecords have no resource-level permissions.",
    ),
    (
        re.compile(r"^AwsSolutions-IAM5\[Resource::(<Blobs\w+\.Arn>|LoomEngine:\w*Blobs\w*)/\*\]$"),
        "Objects of the one blob bucket.",
    ),
    (
        re.compile(r"^AwsSolutions-IAM5\[Resource::(<\w+\.Arn>|LoomEngine:\w+):\*\]$"),
        "Versions and aliases of one named function (grant_invoke).",
    ),
    (
        re.compile(
            r"^AwsSolutions-IAM5\[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
            r"<AWS::AccountId>:execution:loom-workflow-run:\*\]$"
        ),
        "Stopping executions of the one state machine (cancel), named by run id.",
    ),
    (
        re.compile(
            r"^AwsSolutions-IAM5\[Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:"
            r"<AWS::AccountId>:schedule/loom-triggers/\*\]$"
        ),
        "Schedules of the one group of CRON triggers, made and removed at run time, one per "
        "trigger (named by its id) as workflows are deployed.",
    ),
    (
        re.compile(r"^AwsSolutions-IAM5\[Resource::<Mail\w+\.Arn>/\*\]$"),
        "Messages of the one inbound-mail bucket, stored by SES under its message ids.",
    ),
]


def accepted(rule: str) -> bool:
    return any(pattern.match(rule) for pattern, _ in FINDINGS)


@jsii.implements(cdk.IPolicyValidationPlugin)
class AcknowledgedAwsSolutions:
    """AwsSolutionsChecks, less the findings ``FINDINGS`` accepts."""

    def __init__(self, app: cdk.App) -> None:
        self._pack = AwsSolutionsChecks(app)

    @property
    def name(self) -> str:
        return "AwsSolutions"

    @property
    def rule_ids(self) -> list[str] | None:
        return None

    @property
    def version(self) -> str | None:
        return None

    def validate(self, context: cdk.IPolicyValidationContext) -> cdk.PolicyValidationPluginReport:
        report = self._pack.validate(context)
        left = [v for v in report.violations if not accepted(v.rule_name)]
        return cdk.PolicyValidationPluginReport(success=not left, violations=left)


def check(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AcknowledgedAwsSolutions(app))


def acknowledge(scope: IConstruct, *rules: str) -> None:
    """Accept ``rules`` on ``scope`` (and what it contains), with their reasons."""
    for rule in rules:
        cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=REASONS[rule]))
