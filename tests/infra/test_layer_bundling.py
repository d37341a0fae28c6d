"""The layers ship bytecode the Lambda runtime loads: compiled by the runtime's Python,
never checked against the source (/opt is read-only, and the zip CDK makes resets every
file's time), nothing compiled by another Python. Without bundling they are their source."""

from __future__ import annotations

import zipfile
from importlib.util import MAGIC_NUMBER
from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Annotations, Match

from stacks import functions
from stacks.constants import SKIP_BUNDLING
from stacks.functions import (
    BUILD_PYTHON,
    LAYERS,
    RUNTIME,
    RUNTIME_PYTHON,
    Layers,
    PackageBundling,
    PipBundling,
)

IMAGE = RUNTIME.bundling_image  # never used: the bundling is local
RUNTIME_TAG = "cpython-" + RUNTIME_PYTHON.replace(".", "")
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked
runtime_python_only = pytest.mark.skipif(
    BUILD_PYTHON != RUNTIME_PYTHON, reason=f"only Python {RUNTIME_PYTHON} compiles the layers"
)


def _bytecode(module: Path) -> Path:
    return module.parent / "__pycache__" / f"{module.stem}.{RUNTIME_TAG}.pyc"


def _loads_unchecked(pyc: Path) -> bool:
    header = pyc.read_bytes()[:8]
    return header[:4] == MAGIC_NUMBER and int.from_bytes(header[4:], "little") == UNCHECKED_HASH


def _wheel(folder: Path, name: str = "tiny") -> Path:
    """A one-module wheel, which pip installs without an index."""
    path = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": "VALUE = 1\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as wheel:
        for file, text in files.items():
            wheel.writestr(file, text)
    return path


@runtime_python_only
def test_the_core_layer_ships_unchecked_runtime_bytecode_for_every_module(tmp_path: Path) -> None:
    loom = LAYERS / "core" / "python" / "loom"
    PackageBundling(loom, bytecode=True).try_bundle(str(tmp_path), image=IMAGE)
    modules = sorted((tmp_path / "python" / "loom").rglob("*.py"))
    assert len(modules) == len(list(loom.rglob("*.py")))
    assert [m for m in modules if not _loads_unchecked(_bytecode(m))] == []
    assert sorted(tmp_path.rglob("*.pyc")) == sorted(map(_bytecode, modules))


def test_a_layer_built_by_another_python_ships_its_source_only(tmp_path: Path) -> None:
    package = tmp_path / "source" / "tiny"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 1\n")
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"stale")
    PackageBundling(package, bytecode=False).try_bundle(str(tmp_path / "out"), image=IMAGE)
    shipped = tmp_path / "out" / "python" / "tiny"
    assert [p.name for p in shipped.iterdir()] == ["__init__.py"]


@pytest.mark.parametrize("bytecode", [True, False])
def test_the_pip_layers_ship_runtime_bytecode_or_none(tmp_path: Path, bytecode: bool) -> None:
    if bytecode and BUILD_PYTHON != RUNTIME_PYTHON:
        pytest.skip(f"only Python {RUNTIME_PYTHON} compiles the layers")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"{_wheel(tmp_path)}\n")
    PipBundling(requirements, bytecode=bytecode).try_bundle(str(tmp_path / "out"), image=IMAGE)
    module = tmp_path / "out" / "python" / "tiny.py"
    assert module.is_file()
    compiled = sorted((tmp_path / "out").rglob("*.pyc"))
    assert compiled == ([_bytecode(module)] if bytecode else [])
    assert all(map(_loads_unchecked, compiled))


def test_without_bundling_the_core_layer_is_its_source(tmp_path: Path) -> None:
    app = App(context={SKIP_BUNDLING: True}, outdir=str(tmp_path))
    Layers(Stack(app, "Layers"), "Layers")
    assets = Path(app.synth().directory).glob("asset.*")
    (core,) = [asset for asset in assets if (asset / "python" / "loom").is_dir()]
    assert (core / "python" / "loom" / "engine" / "runner.py").is_file()
    assert list(core.rglob("*.pyc")) == []


def test_layers_built_by_another_python_say_why_they_have_no_bytecode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(functions, "BUILD_PYTHON", "3.99")
    # No stack is bundled (CDK's own switch): the layers are only declared.
    app = App(context={"aws:cdk:bundling-stacks": []})
    stack = Stack(app, "Layers")
    Layers(stack, "Layers")
    warnings = Annotations.from_stack(stack).find_warning(
        "/Layers/Layers", Match.string_like_regexp("Python 3.99.*ship source only")
    )
    assert len(warnings) == 1


def test_a_layer_leaves_out_what_the_runtime_and_the_layer_beside_it_hold(tmp_path: Path) -> None:
    deps = tmp_path / "deps.txt"
    deps.write_text(f"{_wheel(tmp_path, 'shared')}\n{_wheel(tmp_path, 'botocore')}\n")
    llm = tmp_path / "llm.txt"
    llm.write_text(f"{_wheel(tmp_path, 'shared')}\n{_wheel(tmp_path, 'leaf')}\n")
    PipBundling(deps, bytecode=False).try_bundle(str(tmp_path / "deps"), image=IMAGE)
    PipBundling(llm, bytecode=False, beside=deps).try_bundle(str(tmp_path / "llm"), image=IMAGE)

    def shipped(layer: str) -> set[str]:
        return {path.name for path in (tmp_path / layer / "python").iterdir()}

    assert shipped("deps") == {"shared.py", "shared-1.0.dist-info"}  # botocore: the runtime's
    assert shipped("llm") == {"leaf.py", "leaf-1.0.dist-info"}
    pins = (tmp_path / "llm" / "constraints.txt").read_text().split()
    assert sorted(pins) == ["botocore==1.0", "shared==1.0"]
