"""The Step Functions engine in-process: ``workflow_run.asl.json`` executed by moto's Step
Functions interpreter, with Lambda invocations routed to the real entry points.

moto's "simple" Lambda backend (``config={"lambda": {"use_docker": False}}``) never runs
code; ``SimulatedLambda`` patches its ``invoke`` so that each function name calls the
handler of its ``functions/`` module in this process, with a Lambda-like context, and
turns an exception into a Lambda function error the way the Python runtime does. Tests
may make a function fail as a Lambda would (``fail_next``: time out, run out of memory).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend

from loom.config import get_settings
from loom.nodes import code
from loom.runtime.aws import clients
from loom.runtime.aws.platform import current_platform
from tests.utils.pg import PgCluster

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachines" / "workflow_run.asl.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STATE_MACHINE = "loom-workflow-run"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE}"
BUCKET = "loom-blobs-test"

# Function name -> the module whose ``handler`` it runs.
FUNCTIONS = {
    "loom-advance": "functions.engine.advance",
    "loom-hil-callback": "functions.engine.hil_callback",
    "loom-hil-timeout": "functions.engine.hil_timeout",
    "loom-node-action": "functions.nodes.action",
    "loom-node-ai-agent": "functions.nodes.ai_agent",
    "loom-node-external-action": "functions.nodes.external_action",
    "loom-node-flow": "functions.nodes.flow",
    "loom-node-human-in-the-loop": "functions.nodes.human_in_the_loop",
    "loom-node-code": "functions.nodes.code",
    "loom-schedule-fired": "functions.triggers.schedule_fired",
    "loom-intake": "functions.workers.intake",
    "loom-stranded-runs": "functions.workers.stranded_runs",
    "loom-intake-consumer": "functions.triggers.intake_consumer",
    "loom-redrive": "functions.workers.redrive",
    "loom-mail-received": "functions.triggers.mail_received",
}
NODE_FUNCTIONS = {
    "ACTION": "loom-node-action",
    "AI_AGENT": "loom-node-ai-agent",
    "EXTERNAL_ACTION": "loom-node-external-action",
    "FLOW": "loom-node-flow",
    "HUMAN_IN_THE_LOOP": "loom-node-human-in-the-loop",
}


def definition() -> str:
    """The ASL file with the substitutions the engine stack makes."""
    text = ASL.read_text()
    for name, value in {
        "AdvanceFunctionArn": _arn("loom-advance"),
        "HilTimeoutFunctionArn": _arn("loom-hil-timeout"),
    }.items():
        text = text.replace("${" + name + "}", value)
    return text


def _arn(function: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}"


@dataclass
class LambdaContext:
    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return _arn(self.function_name)

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class SimulatedLambda:
    """Routes moto's Lambda invocations to the entry points; counts them by function.

    Functions that use the platform share this process's one (as if one container), so
    their invocations take turns, as a container's do; the code function has none.
    """

    calls: Counter[str] = field(default_factory=Counter)
    failures: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    container: threading.RLock = field(default_factory=threading.RLock)

    def fail_next(self, function: str, error_type: str, message: str) -> None:
        """Make the next invocation of ``function`` fail as Lambda would (no code runs)."""
        self.failures.setdefault(function, []).append(
            {"errorType": error_type, "errorMessage": message}
        )

    def invoke(
        self,
        backend: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        name = function_name.rsplit(":", 1)[-1]
        self.calls[name] += 1
        pending = self.failures.get(name)
        if pending:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(pending.pop(0)).encode()
        handler = importlib.import_module(FUNCTIONS[name]).handler
        turn = contextlib.nullcontext() if name == "loom-node-code" else self.container
        try:
            with turn:
                result = handler(json.loads(body or "{}"), LambdaContext(name))
        except Exception as exc:  # what the Python runtime reports for an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()


@dataclass
class AwsEngine:
    sfn: Any
    s3: Any
    lambdas: SimulatedLambda

    def execution(self, run_id: uuid.UUID | str) -> str:
        return f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STATE_MACHINE}:{run_id}"

    def wait(self, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
        """Wait for the execution to end; its description."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found: dict[str, Any] = self.sfn.describe_execution(executionArn=execution_arn)
            if found["status"] != "RUNNING":
                return found
            time.sleep(0.05)
        raise AssertionError(f"execution {execution_arn} still runs after {timeout} s")

    def wait_for_run(self, run_id: uuid.UUID, timeout: float = 60) -> list[dict[str, Any]]:
        """Wait for the run's executions (continuations included) to end; them, in order."""
        deadline = time.monotonic() + timeout
        while True:
            listed = self.sfn.list_executions(stateMachineArn=STATE_MACHINE_ARN)["executions"]
            mine = sorted(
                (e for e in listed if e["name"].split("-", 5)[:5] == str(run_id).split("-")),
                key=lambda e: int(e["name"][37:] or 0),
            )
            ended = [self.wait(e["executionArn"], deadline - time.monotonic()) for e in mine]
            if ended and '"continued"' not in (ended[-1].get("output") or ""):
                return ended
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} did not end: {ended}")
            time.sleep(0.05)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        token: dict[str, str] = {}
        while True:
            page = self.sfn.get_execution_history(
                executionArn=execution_arn, maxResults=1000, **token
            )
            events += page["events"]
            if not page.get("nextToken"):
                return events
            token = {"nextToken": page["nextToken"]}


def environment(cluster: PgCluster, home: Path, **extra: str) -> dict[str, str]:
    """What the engine stack sets on the functions, pointed at the test database."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "loom",
        "DATABASE_URL": cluster.urls.owner,
        "LOOM_APP_DATABASE_URL": cluster.urls.app,
        "LOOM_HOME": str(home),
        "LOOM_POOL_MAX_SIZE": "4",
        "LOOM_STATE_MACHINE_ARN": STATE_MACHINE_ARN,
        "LOOM_NODE_FUNCTIONS": json.dumps(NODE_FUNCTIONS),
        "LOOM_HIL_CALLBACK_FUNCTION": "loom-hil-callback",
        "LOOM_CODE_FUNCTION": "loom-node-code",
        "LOOM_BLOB_BUCKET": BUCKET,
        **extra,
    }


def _forget_containers() -> None:
    """What a new Lambda container would not have: settings, clients, the platform."""
    if current_platform.cache_info().currsize:
        current_platform().db.close()
    current_platform.cache_clear()
    get_settings.cache_clear()
    clients.client.cache_clear()


@contextmanager
def aws_engine(
    monkeypatch: pytest.MonkeyPatch, cluster: PgCluster, home: Path, **extra: str
) -> Iterator[AwsEngine]:
    """moto with the state machine and blob bucket created, functions routed in-process."""
    for name, value in environment(cluster, home, **extra).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(code, "RUNNER", code.RUNNER)  # the platform swaps it; put it back
    lambdas = SimulatedLambda()
    route: Callable[..., bytes] = lambdas.invoke
    config: Any = {
        "stepfunctions": {"execute_state_machine": True},
        "lambda": {"use_docker": False},
    }
    _forget_containers()
    with (
        mock_aws(config=config),
        mock.patch.object(LambdaSimpleBackend, "invoke", autospec=True, side_effect=route),
    ):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        sfn.create_state_machine(
            name=STATE_MACHINE,
            definition=definition(),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/loom-workflow-run",
        )
        try:
            yield AwsEngine(sfn, s3, lambdas)
        finally:
            _forget_containers()


def transitions(events: list[dict[str, Any]]) -> int:
    """State transitions Step Functions bills: one per state entered."""
    return sum(1 for e in events if e["type"].endswith("StateEntered"))


def settle(engine: AwsEngine) -> None:
    """Wait for every execution still running: one left behind would call the functions
    in the next test, with its environment half undone."""
    listed = engine.sfn.list_executions(stateMachineArn=STATE_MACHINE_ARN)["executions"]
    for execution in listed:
        engine.wait(execution["executionArn"])
