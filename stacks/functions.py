"""Lambda building blocks shared by the stacks: the layers (core library, third-party
dependencies bundled locally with pip for arm64, litellm), each shipped with its bytecode
for the runtime's Python, and a Python function with tracing, JSON logs and its own
least-privilege role."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection
from importlib import metadata
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    Annotations,
    BundlingOptions,
    DockerImage,
    Duration,
    FileSystem,
    ILocalBundling,
    RemovalPolicy,
)
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from packaging.utils import canonicalize_name

from stacks.constants import ROOT, SERVICE_NAME, SKIP_BUNDLING
from stacks.nag import acknowledge
from stacks.network import NetworkStack

RUNTIME = lambda_.Runtime.PYTHON_3_11
RUNTIME_PYTHON = RUNTIME.name.removeprefix("python")  # "3.11"
BUILD_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # what builds the layers
ARCHITECTURE = lambda_.Architecture.ARM_64
FUNCTIONS = ROOT / "functions"
LAYERS = ROOT / "layers"
BYTECODE = "**/__pycache__"
DEFAULT_TIMEOUT = Duration.seconds(30)


def compile_bytecode(folder: Path) -> None:
    """Compile every module under ``folder``, to bytecode that is never checked against
    its source: on Lambda /opt is read-only, so a module without bytecode is compiled on
    every cold start, and the zip CDK makes of an asset resets every file's time, which
    would make timestamp-checked bytecode (pip's) stale."""
    # Bytecode goes next to its module, wherever the caller keeps its own.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    command = [
        sys.executable, "-m", "compileall", "-q", "-f",
        "--invalidation-mode", "unchecked-hash", str(folder),
    ]  # fmt: skip
    subprocess.run(command, check=True, env=env)  # noqa: S603 - our own interpreter


# In the Lambda Python runtime already (/var/runtime): shipped again, they would only take
# room under the 250 MB that a function and its layers may unpack to.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
_PIP = [sys.executable, "-m", "pip"]
# Wheels for Lambda on arm64, and nothing that needs building: no Docker, no compilers.
_LAMBDA_WHEELS = [
    "--disable-pip-version-check", "--platform", "manylinux2014_aarch64",
    "--implementation", "cp", "--python-version", RUNTIME_PYTHON, "--only-binary=:all:",
]  # fmt: skip


@jsii.implements(ILocalBundling)
class PipBundling:
    """Installs a requirements file into the layer's ``python/`` for Lambda on arm64, with
    pip and wheels only, leaving out what the runtime has. ``bytecode``: compile it too.
    ``beside``: the requirements of the layer this one is always deployed with; the
    packages that layer holds are pinned to its versions and left to it, so that /opt
    holds one version of each and no package counts twice against the size limit."""

    def __init__(self, requirements: Path, *, bytecode: bool, beside: Path | None = None) -> None:
        self.requirements = requirements
        self.bytecode = bytecode
        self.beside = beside

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: Any) -> bool:
        target = Path(output_dir) / "python"
        leave_out = set(RUNTIME_PROVIDED)
        constraints: list[str] = []
        if self.beside is not None:
            pinned = resolved_versions(self.beside)
            # Kept with the layer, beside its requirements: the versions it was built against.
            pins = Path(output_dir) / "constraints.txt"
            pins.parent.mkdir(parents=True, exist_ok=True)
            pins.write_text("".join(f"{name}=={version}\n" for name, version in pinned.items()))
            constraints = ["-c", str(pins)]
            leave_out |= set(pinned)
        command = [
            *_PIP, "install", "--quiet", *_LAMBDA_WHEELS, "--no-compile",
            "--target", str(target), "-r", str(self.requirements), *constraints,
        ]  # fmt: skip
        subprocess.run(command, check=True)  # noqa: S603 - our own interpreter and file
        remove_distributions(target, leave_out)
        if self.bytecode:
            compile_bytecode(target)
        shutil.copy(self.requirements, Path(output_dir) / "requirements.txt")
        return True


def resolved_versions(requirements: Path) -> dict[str, str]:
    """What pip installs for ``requirements`` on Lambda: normalized name -> version."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [
            *_PIP, "install", "--quiet", *_LAMBDA_WHEELS, "--dry-run", "--target", folder,
            "--report", str(report), "-r", str(requirements),
        ]  # fmt: skip
        subprocess.run(command, check=True)  # noqa: S603 - our own interpreter and file
        found = json.loads(report.read_text())["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in found}


def remove_distributions(target: Path, names: Collection[str]) -> None:
    """Delete the installed distributions ``names`` from ``target``, by their RECORD."""
    target = target.resolve()
    for dist in metadata.distributions(path=[str(target)]):
        if canonicalize_name(dist.metadata["Name"]) not in names:
            continue
        folders: set[Path] = set()
        for file in dist.files or []:
            path = Path(target, file).resolve()
            if target not in path.parents:
                continue  # a RECORD entry outside the layer is not ours to delete
            path.unlink(missing_ok=True)
            folders.update(parent for parent in path.parents if target in parent.parents)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


@jsii.implements(ILocalBundling)
class PackageBundling:
    """Copies a package into the layer's ``python/``, without the bytecode found beside
    it. ``bytecode``: compile it."""

    def __init__(self, package: Path, *, bytecode: bool) -> None:
        self.package = package
        self.bytecode = bytecode

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: Any) -> bool:
        target = Path(output_dir) / "python" / self.package.name
        shutil.copytree(self.package, target, ignore=shutil.ignore_patterns("__pycache__"))
        if self.bytecode:
            compile_bytecode(target)
        return True


def _layer_code(
    scope: Construct, name: str, bundler: PipBundling | PackageBundling
) -> lambda_.Code:
    folder = LAYERS / name
    if scope.node.try_get_context(SKIP_BUNDLING):
        return lambda_.Code.from_asset(str(folder), exclude=[BYTECODE])
    bundling = BundlingOptions(image=RUNTIME.bundling_image, local=bundler)
    # The layer is its source, compiled or not: its hash says both, so that a deploy from
    # another Python builds a new layer rather than keep the one built the other way.
    built = f"cpython-{RUNTIME_PYTHON}" if bundler.bytecode else "source"
    asset_hash = FileSystem.fingerprint(str(folder), exclude=[BYTECODE], extra_hash=built)
    return lambda_.Code.from_asset(str(folder), bundling=bundling, asset_hash=asset_hash)


class Layers(Construct):
    """``core`` (the loom library), ``deps`` (its dependencies), ``llm`` (litellm); with
    their bytecode when this Python is the runtime's (a .pyc belongs to one version:
    Lambda ignores another's)."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        bytecode = BUILD_PYTHON == RUNTIME_PYTHON
        if not bytecode and not self.node.try_get_context(SKIP_BUNDLING):
            Annotations.of(self).add_warning_v2(
                "loom:layersWithoutBytecode",
                f"The layers are built with Python {BUILD_PYTHON}, whose bytecode the Lambda "
                f"runtime (Python {RUNTIME_PYTHON}) ignores: they ship source only, compiled "
                f"on every cold start. Synthesize with Python {RUNTIME_PYTHON} to ship it.",
            )
        loom = LAYERS / "core" / "python" / "loom"
        self.core = self._layer("core", PackageBundling(loom, bytecode=bytecode))
        deps = PipBundling(LAYERS / "deps" / "requirements.txt", bytecode=bytecode)
        self.deps = self._layer("deps", deps)
        llm = PipBundling(
            LAYERS / "llm" / "requirements.txt", bytecode=bytecode, beside=deps.requirements
        )
        self.llm = self._layer("llm", llm)

    def _layer(self, name: str, bundler: PipBundling | PackageBundling) -> lambda_.LayerVersion:
        return lambda_.LayerVersion(
            self,
            name.capitalize(),
            code=_layer_code(self, name, bundler),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )


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
