"""The CDK app synthesizes offline, without credentials, and its stacks hold what they must."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template

from stacks.constants import STATE_MACHINE_FILE

ROOT = Path(__file__).resolve().parents[2]
STACKS = {"LoomNetwork", "LoomData", "LoomEngine", "LoomApi", "LoomTriggers", "LoomObservability"}
Templates = dict[str, dict[str, Any]]


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _logical_id(template: dict[str, Any], kind: str, prefix: str) -> str:
    (found,) = [k for k in _resources(template, kind) if k.startswith(prefix)]
    return found


def test_app_synthesizes_offline_without_credentials(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("CDK_")
    }
    env.update(
        {
            "CDK_OUTDIR": str(tmp_path),
            "CDK_CONTEXT_JSON": json.dumps({"loom:skipBundling": True}),
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        }
    )
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert {
        p.name.removesuffix(".template.json") for p in tmp_path.glob("*.template.json")
    } == STACKS


def test_the_state_machine_is_the_asl_file_with_its_substitutions(templates: Templates) -> None:
    engine = templates["LoomEngine"]
    (machine,) = _resources(engine, "AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert "DefinitionS3Location" in props, "the definition is the file, uploaded as an asset"
    advance = _logical_id(engine, "AWS::Lambda::Function", "Advance")
    timeout = _logical_id(engine, "AWS::Lambda::Function", "HilTimeout")
    assert props["DefinitionSubstitutions"] == {
        "AdvanceFunctionArn": {"Fn::GetAtt": [advance, "Arn"]},
        "HilTimeoutFunctionArn": {"Fn::GetAtt": [timeout, "Arn"]},
    }
    placeholders = set(re.findall(r"\$\{(\w+)\}", STATE_MACHINE_FILE.read_text()))
    assert placeholders == set(props["DefinitionSubstitutions"])
    assert props["StateMachineName"] == "loom-workflow-run"
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ERROR"


def test_every_queue_has_a_dead_letter_queue(templates: Templates) -> None:
    for name, template in templates.items():
        for logical_id, queue in _resources(template, "AWS::SQS::Queue").items():
            if "Dlq" in logical_id:
                continue
            redrive = queue["Properties"].get("RedrivePolicy", {})
            assert redrive.get("maxReceiveCount", 0) >= 1, f"{name}/{logical_id}"


def test_asynchronously_invoked_functions_have_an_on_failure_destination(
    templates: Templates,
) -> None:
    engine = Template.from_json(templates["LoomEngine"])
    engine.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "FunctionName": {
                "Ref": _logical_id(templates["LoomEngine"], "AWS::Lambda::Function", "HilCallback")
            },
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {"OnFailure": {"Destination": Match.any_value()}},
        },
    )


def _policies_of(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    return [
        s
        for policy in _resources(template, "AWS::IAM::Policy").values()
        if any(r.get("Ref", "").startswith(role_prefix) for r in policy["Properties"]["Roles"])
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_hil_callback_may_only_answer_tasks_of_this_state_machine(
    templates: Templates,
) -> None:
    statements = _policies_of(templates["LoomEngine"], "HilCallbackServiceRole")
    states = [s for s in statements if any(a.startswith("states:") for a in _list(s["Action"]))]
    assert len(states) == 1
    assert sorted(_list(states[0]["Action"])) == [
        "states:SendTaskFailure",
        "states:SendTaskHeartbeat",
        "states:SendTaskSuccess",
    ]
    resource = json.dumps(states[0]["Resource"])
    assert ":stateMachine:loom-workflow-run" in resource and "*" not in resource


def test_the_code_node_role_has_nothing_beyond_logs(templates: Templates) -> None:
    engine = templates["LoomEngine"]
    assert _policies_of(engine, "CodeRole") == []
    role = engine["Resources"][_logical_id(engine, "AWS::IAM::Role", "CodeRole")]
    assert "ManagedPolicyArns" not in role["Properties"]
    function = engine["Resources"][_logical_id(engine, "AWS::Lambda::Function", "NodeCode")]
    assert "VpcConfig" not in function["Properties"]
    logs = [r for r in _resources(engine, "AWS::Logs::LogGroup") if r.startswith("NodeCodeLogs")]
    assert logs, "the code function writes to its own log group"


def test_blob_bucket_is_private_encrypted_and_tls_only(templates: Templates) -> None:
    template = Template.from_json(templates["LoomEngine"])
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": Match.object_like({}),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
        },
    )
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {
                                    "Effect": "Deny",
                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                                }
                            )
                        ]
                    )
                }
            )
        },
    )


def test_only_functions_that_call_models_get_the_llm_layer(templates: Templates) -> None:
    engine = templates["LoomEngine"]
    (llm,) = [
        k for k in _resources(engine, "AWS::Lambda::LayerVersion") if k.startswith("LayersLlm")
    ]
    with_llm = [
        k
        for k, f in _resources(engine, "AWS::Lambda::Function").items()
        if {"Ref": llm} in f["Properties"].get("Layers", [])
    ]
    assert len(with_llm) == 1 and with_llm[0].startswith("NodeAiAgent")


def _list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def test_cdk_nag_accepts_only_findings_it_has_a_reason_for() -> None:
    from stacks.nag import FINDINGS, REASONS, accepted

    assert all(reason.strip() for reason in REASONS.values())
    assert all(reason.strip() for _, reason in FINDINGS)
    assert accepted("AwsSolutions-IAM5[Action::kms:GenerateDataKey*]")
    assert not accepted("AwsSolutions-IAM5[Action::s3:*]")
    assert not accepted(
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AdministratorAccess]"
    )
    assert not accepted("AwsSolutions-EC23")


# W3005: CDK makes each function depend on its role explicitly as well as by GetAtt.
CFN_LINT_IGNORED = ["W3005"]
REGIONS = ["us-east-1", "eu-west-1"]


def test_the_templates_pass_cfn_lint(templates: Templates) -> None:
    from cfnlint.api import ManualArgs, lint

    args = ManualArgs(regions=REGIONS, ignore_checks=CFN_LINT_IGNORED)
    problems = [
        f"{name}: {match}"
        for name, template in templates.items()
        for match in lint(json.dumps(template), config=args)
        if match.rule.id[0] in "EW"
    ]
    assert problems == []


def test_cdk_nag_fails_the_synth_on_a_finding_without_a_reason() -> None:
    import aws_cdk as cdk
    import pytest
    from aws_cdk import aws_sqs as sqs

    from stacks.nag import check

    app = cdk.App()
    stack = cdk.Stack(app, "Careless")
    sqs.Queue(stack, "NoDeadLetters", enforce_ssl=True)
    check(app)
    with pytest.raises(RuntimeError, match="AwsSolutions-SQS3"):
        app.synth()
