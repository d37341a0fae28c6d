"""Lambda building blocks shared by the stacks: the layers (core library, third-party
dependencies bundled locally with pip for arm64, litellm), and a Python function with
tracing, JSON logs and its own least-privilege role."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constants import ROOT, SERVICE_NAME, SKIP_BUNDLING
from stacks.nag import acknowledge
from stacks.network import NetworkStack

RUNTIME = lambda_.Runtime.PYTHON_3_11
ARCHITECTURE = lambda_.Architecture.ARM_64
FUNCTIONS = ROOT / "functions"
DEFAULT_TIMEOUT = Duration.seconds(30)


@jsii.implements(ILocalBundling)
class PipBundling:
    """Installs a requirements file into the layer's ``python/`` for Lambda on arm64,
    with pip and wheels only: no Docker, no compilers."""

    def __init__(self, requirements: Path) -> None:
        self.requirements = requirements

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: Any) -> bool:
        target = Path(output_dir) / "python"
        command = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--platform", "manylinux2014_aarch64", "--implementation", "cp",
            "--python-version", "3.11", "--only-binary=:all:",
            "--target", str(target), "-r", str(self.requirements),
        ]  # fmt: skip
        subprocess.run(command, check=True)  # noqa: S603 - our own interpreter and file
        shutil.copy(self.requirements, Path(output_dir) / "requirements.txt")
        return True


def _layer_code(scope: Construct, name: str) -> lambda_.Code:
    folder = ROOT / "layers" / name
    if scope.node.try_get_context(SKIP_BUNDLING):
        return lambda_.Code.from_asset(str(folder))
    bundling = BundlingOptions(
        image=RUNTIME.bundling_image, local=PipBundling(folder / "requirements.txt")
    )
    return lambda_.Code.from_asset(str(folder), bundling=bundling)


class Layers(Construct):
    """``core`` (the loom library), ``deps`` (its dependencies), ``llm`` (litellm)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        common: dict[str, Any] = {
            "compatible_runtimes": [RUNTIME],
            "compatible_architectures": [ARCHITECTURE],
        }
        self.core = lambda_.LayerVersion(
            self, "Core", code=lambda_.Code.from_asset(str(ROOT / "layers" / "core")), **common
        )
        self.deps = lambda_.LayerVersion(self, "Deps", code=_layer_code(self, "deps"), **common)
        self.llm = lambda_.LayerVersion(self, "Llm", code=_layer_code(self, "llm"), **common)


def python_function(
    scope: Construct,
    construct_id: str,
    handler: str,
    *,
    layers: Layers,
    network: NetworkStack | None,
    environment: dict[str, str] | None = None,
    calls_models: bool = False,
    timeout: Duration = DEFAULT_TIMEOUT,
    memory_size: int = 1024,
    tracing: lambda_.Tracing = lambda_.Tracing.ACTIVE,
    **kwargs: Any,
) -> lambda_.Function:
    """A function from ``functions/`` (``handler`` like ``engine/advance.handler``), in the
    VPC's private subnets unless ``network`` is None."""
    chosen = [layers.core, layers.deps] + ([layers.llm] if calls_models else [])
    vpc: dict[str, Any] = {}
    if network is not None:
        vpc = {
            "vpc": network.vpc,
            "vpc_subnets": network.app_subnets,
            "security_groups": [network.functions_sg],
        }
    module, _, name = handler.rpartition(".")
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        code=lambda_.Code.from_asset(str(FUNCTIONS), exclude=["**/__pycache__"]),
        handler=f"{module.replace('/', '.')}.{name}",
        layers=chosen,
        timeout=timeout,
        memory_size=memory_size,
        tracing=tracing,
        logging_format=lambda_.LoggingFormat.JSON,
        log_group=logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        ),
        environment={
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": "Loom",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            **(environment or {}),
        },
        **vpc,
        **kwargs,
    )
    acknowledge(function, "AwsSolutions-L1")
    return function
