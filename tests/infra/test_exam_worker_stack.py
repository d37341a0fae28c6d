"""The exam worker on AWS: an EventBridge schedule invokes its function every 15 minutes;
the function may run that long and, as it calls models, carries the litellm layer."""

from __future__ import annotations

from typing import Any

from stacks.triggers import EXAM_JOB

Templates = dict[str, dict[str, Any]]


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == kind}


def test_the_exam_worker_runs_every_15_minutes_with_the_llm_layer(templates: Templates) -> None:
    triggers = templates["LoomTriggers"]
    functions = _resources(triggers, "AWS::Lambda::Function")
    (exams,) = [k for k in functions if k.startswith("Exams")]
    props = functions[exams]["Properties"]
    assert props["Handler"] == "workers.exams.handler"
    assert props["Timeout"] == EXAM_JOB.timeout_minutes * 60 == 900
    (llm,) = [k for k in _resources(triggers, "AWS::Lambda::LayerVersion") if "Llm" in k]
    assert {"Ref": llm} in props["Layers"]
    others = [f for k, f in functions.items() if k != exams]
    assert others and all({"Ref": llm} not in f["Properties"]["Layers"] for f in others)

    schedules = _resources(triggers, "AWS::Scheduler::Schedule")
    (schedule,) = [s for k, s in schedules.items() if k.startswith("Exams")]
    assert schedule["Properties"]["ScheduleExpression"] == "rate(15 minutes)"
    assert schedule["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": [exams, "Arn"]}
    (fired,) = [s for k, s in schedules.items() if k.startswith("ScheduleFired")]
    assert fired["Properties"]["ScheduleExpression"] == "rate(1 minute)"  # unchanged
