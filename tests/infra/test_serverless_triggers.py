"""The serverless trigger parts in the templates: the SQS intake queue with its DLQ, its
consumer's partial batch responses and the redrive worker; per-trigger schedules, which
only the deploying API functions may make; loom_app's IAM auth through the proxy; and
inbound mail through SES, when asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stacks.constants import DLQ_MAX_RECEIVE_COUNT
from stacks.triggers import (
    DEPLOYERS,
    INBOUND_MAIL,
    INTAKE_TIMEOUT_SECONDS,
    MAIL_PREFIX,
    TRIGGER_SCHEDULE_GROUP,
)

Templates = dict[str, dict[str, Any]]


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def _one(template: dict[str, Any], kind: str, prefix: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, r) for k, r in _resources(template, kind).items() if k.startswith(prefix)]
    return found


def _environment(function: dict[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
    return variables


def _statements(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    return [
        s
        for policy in _resources(template, "AWS::IAM::Policy").values()
        if any(r.get("Ref", "").startswith(role_prefix) for r in policy["Properties"]["Roles"])
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> set[str]:
    actions = statement["Action"]
    return {actions} if isinstance(actions, str) else set(actions)


def test_the_intake_queue_has_a_dlq_and_a_consumer_with_partial_batch_responses(
    templates: Templates,
) -> None:
    triggers = templates["LoomTriggers"]
    queue_id, queue = _one(triggers, "AWS::SQS::Queue", "IntakeQueue")
    dlq_id, _ = _one(triggers, "AWS::SQS::Queue", "IntakeDlq")
    redrive = queue["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == DLQ_MAX_RECEIVE_COUNT
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert queue["Properties"]["VisibilityTimeout"] == 6 * INTAKE_TIMEOUT_SECONDS

    consumer_id, consumer = _one(triggers, "AWS::Lambda::Function", "IntakeConsumer")
    assert consumer["Properties"]["Handler"] == "triggers.intake_consumer.handler"
    assert consumer["Properties"]["Timeout"] == INTAKE_TIMEOUT_SECONDS
    environment = _environment(consumer)
    assert environment["LOOM_INTAKE_QUEUE_URL"] == {"Ref": queue_id}
    assert environment["LOOM_INTAKE_MAX_ATTEMPTS"] == str(DLQ_MAX_RECEIVE_COUNT)
    (mapping,) = _resources(triggers, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": consumer_id}
    assert props["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_redrive_worker_moves_the_dlq_back_and_nothing_invokes_it_by_itself(
    templates: Templates,
) -> None:
    triggers = templates["LoomTriggers"]
    queue_id, _ = _one(triggers, "AWS::SQS::Queue", "IntakeQueue")
    dlq_id, _ = _one(triggers, "AWS::SQS::Queue", "IntakeDlq")
    redrive_id, redrive = _one(triggers, "AWS::Lambda::Function", "IntakeRedrive")
    assert redrive["Properties"]["Handler"] == "workers.redrive.handler"
    environment = _environment(redrive)
    assert environment["LOOM_INTAKE_DLQ_URL"] == {"Ref": dlq_id}
    assert environment["LOOM_INTAKE_QUEUE_URL"] == {"Ref": queue_id}
    statements = _statements(triggers, "IntakeRedriveServiceRole")
    reads = [s for s in statements if "sqs:ReceiveMessage" in _actions(s)]
    sends = [s for s in statements if "sqs:SendMessage" in _actions(s)]
    assert [s["Resource"] for s in reads] == [{"Fn::GetAtt": [dlq_id, "Arn"]}]
    assert [s["Resource"] for s in sends] == [{"Fn::GetAtt": [queue_id, "Arn"]}]
    assert not any(
        s["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [redrive_id, "Arn"]}
        for s in _resources(triggers, "AWS::Scheduler::Schedule").values()
    )


def test_the_hooks_send_to_the_intake_queue(templates: Templates) -> None:
    _, hooks = _one(templates["LoomApi"], "AWS::Lambda::Function", "ApiTriggers")
    assert "LOOM_INTAKE_QUEUE_URL" in _environment(hooks)
    statements = _statements(templates["LoomApi"], "ApiTriggersServiceRole")
    (send,) = [s for s in statements if "sqs:SendMessage" in _actions(s)]
    assert "IntakeQueue" in json.dumps(send["Resource"])


def test_only_the_deploying_functions_manage_trigger_schedules_of_their_group(
    templates: Templates,
) -> None:
    api = templates["LoomApi"]
    triggers = templates["LoomTriggers"]
    groups = _resources(triggers, "AWS::Scheduler::ScheduleGroup").values()
    assert TRIGGER_SCHEDULE_GROUP in [g["Properties"]["Name"] for g in groups]
    fired_id, _ = _one(triggers, "AWS::Lambda::Function", "ScheduleFired")
    managers = set()
    for function_id, function in _resources(api, "AWS::Lambda::Function").items():
        statements = _statements(api, f"{function_id[:-8]}ServiceRole")  # id = path + hash
        scheduling = [s for s in statements if any(a.startswith("scheduler:") for a in _actions(s))]
        if not scheduling:
            assert "LOOM_SCHEDULE_GROUP" not in _environment(function)
            continue
        managers.add(function_id[:-8])
        (statement,) = scheduling
        assert _actions(statement) == {
            "scheduler:CreateSchedule",
            "scheduler:UpdateSchedule",
            "scheduler:DeleteSchedule",
        }
        assert f":schedule/{TRIGGER_SCHEDULE_GROUP}/*" in json.dumps(statement["Resource"])
        (passes,) = [s for s in statements if "iam:PassRole" in _actions(s)]
        assert "SchedulerRole" in json.dumps(passes["Resource"])
        environment = _environment(function)
        assert environment["LOOM_SCHEDULE_GROUP"] == TRIGGER_SCHEDULE_GROUP
        assert fired_id in json.dumps(environment["LOOM_SCHEDULE_TARGET_ARN"])
        assert "SchedulerRole" in json.dumps(environment["LOOM_SCHEDULE_ROLE_ARN"])
        assert "JobsDlq" in json.dumps(environment["LOOM_SCHEDULE_DLQ_ARN"])
    assert {m.removeprefix("Api").lower() for m in managers} == set(DEPLOYERS)


def test_the_proxy_requires_iam_auth_end_to_end_and_functions_use_it(
    templates: Templates,
) -> None:
    data = templates["LoomData"]
    _, proxy = _one(data, "AWS::RDS::DBProxy", "AuroraProxy")
    props = proxy["Properties"]
    assert props["DefaultAuthScheme"] == "IAM_AUTH"
    assert props["RequireTLS"] is True
    assert all(auth["IAMAuth"] == "REQUIRED" for auth in props["Auth"])
    role_id, _ = _one(data, "AWS::IAM::Role", "ProxyRole")
    assert props["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    (connect,) = [s for s in _statements(data, role_id) if "rds-db:connect" in _actions(s)]
    assert json.dumps(connect["Resource"]).endswith('"/loom_app"]]}')

    for name in ("LoomEngine", "LoomApi", "LoomTriggers"):
        for function_id, function in _resources(templates[name], "AWS::Lambda::Function").items():
            environment = function["Properties"].get("Environment", {}).get("Variables", {})
            if "LOOM_APP_DATABASE_URL" in environment:
                assert environment["LOOM_DB_IAM_AUTH"] == "true", f"{name}/{function_id}"


def test_inbound_mail_is_off_unless_asked_for(templates: Templates) -> None:
    triggers = templates["LoomTriggers"]
    assert not [r for r in triggers["Resources"].values() if r["Type"].startswith("AWS::SES")]


def test_inbound_mail_stores_each_message_then_invokes_the_mail_function() -> None:
    from app import build_app

    context = {"loom:skipBundling": True, INBOUND_MAIL: "mail.example.com"}
    (stack,) = [s for s in build_app(context).synth().stacks if s.stack_name == "LoomTriggers"]
    triggers = json.loads(Path(stack.template_full_path).read_text())
    (rule,) = _resources(triggers, "AWS::SES::ReceiptRule").values()
    props = rule["Properties"]["Rule"]
    assert props["Recipients"] == ["mail.example.com"] and props["TlsPolicy"] == "Require"
    store, invoke = props["Actions"]  # in this order: the message is in S3 before the call
    bucket_id, _ = _one(triggers, "AWS::S3::Bucket", "Mail")
    assert store["S3Action"]["BucketName"] == {"Ref": bucket_id}
    assert store["S3Action"]["ObjectKeyPrefix"] == MAIL_PREFIX
    function_id, function = _one(triggers, "AWS::Lambda::Function", "MailReceived")
    assert invoke["LambdaAction"]["FunctionArn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert invoke["LambdaAction"]["InvocationType"] == "Event"
    environment = _environment(function)
    assert environment["LOOM_MAIL_BUCKET"] == {"Ref": bucket_id}
    assert environment["LOOM_MAIL_DOMAIN"] == "mail.example.com"
