"""Where a call goes: the provider, the key and the base URL for a model name.

Models are named ``provider/model`` as litellm names them; ``local/<name>`` is the offline
model that ``loom.llm.local`` serves on 127.0.0.1. Keys come from the workspace first (a
credential of type ``llm_api_key`` for the provider: the one the call names, else the
workspace's first by name), then from the platform (``LOOM_LLM_API_KEYS``). A key is always
passed explicitly, so litellm never falls back to keys in the process environment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from ipaddress import ip_address
from pathlib import Path
from uuid import UUID

from loom.config import LlmSettings
from loom.db import Database
from loom.db import credentials as credentials_repo
from loom.db.llm import outbound_allowlist
from loom.errors import InvalidInput
from loom.llm._litellm import litellm
from loom.llm.errors import LlmKeyMissing, LlmModelUnavailable, LlmModelUnknown
from loom.net.client import system_resolver
from loom.net.policy import Allowlist, check_address, parse_url
from loom.secrets.service import resolve
from loom.secrets.types import CredentialType, LlmApiKey
from loom.secrets.vault import Vault

LOCAL = "local"
CACHE_SECONDS = 30.0
MAX_CACHED = 4096


@dataclass(frozen=True)
class Target:
    model: str  # as the caller named it
    provider: str
    litellm_model: str
    api_key: str = field(repr=False)
    api_base: str | None
    key_source: str  # for messages: where the key came from
    key_owner: UUID | None  # the workspace whose own key this is; None: the platform's
    notice: str | None = None  # to say with the answers (a tiny local model gave them)


def provider_of(model: str) -> str:
    """The provider part of ``model``, or ``LlmModelUnknown`` saying how to name models."""
    provider, sep, name = model.partition("/")
    if not sep or not provider or not name:
        raise LlmModelUnknown(
            f"Model {model!r} does not name its provider.",
            solution="Write models as provider/model, e.g. openai/gpt-4o-mini, "
            "anthropic/claude-3-5-haiku-latest or local/smollm2-135m-instruct.",
        )
    if provider != LOCAL and provider not in _providers():
        raise LlmModelUnknown(
            f"Model {model!r} names provider {provider!r}, which litellm does not know.",
            solution="Use a litellm provider name (openai, anthropic, bedrock, gemini, ...) "
            "or local/<name> for the offline model.",
        )
    return provider


@cache
def _providers() -> frozenset[str]:
    return frozenset(str(getattr(p, "value", p)) for p in litellm().provider_list)


async def local_target(model: str, *, embedding: bool = False) -> Target:
    """Where Loom's local model ``local/<name>`` answers (``loom.llm.local`` starts its
    server on first use). Imported here, so a missing local stack fails only the calls to
    local models; its errors become the gateway's, so a fallback can still answer."""
    try:
        from loom.llm import local
    except ImportError as exc:
        raise LlmModelUnavailable(
            f"{model} is served by Loom's local model, which is not installed here ({exc.msg}).",
            solution="Install Loom with its local models (`make install`), or use a "
            "provider's model such as openai/gpt-4o-mini with a key.",
        ) from None
    name = model.removeprefix(f"{LOCAL}/")
    try:
        if embedding:
            local.register_local_embeddings()
            provider = local.LITELLM_EMBEDDING_MODEL.partition("/")[0]
            return _local(model, f"{provider}/{name}", None, LOCAL, None)
        endpoint = await local.local_endpoint(model)
    except local.UnknownLocalModel as exc:
        raise LlmModelUnknown(exc.message, solution=exc.solution) from None
    except local.LocalModelUnavailable as exc:
        raise LlmModelUnavailable(exc.message, solution=exc.solution) from None
    return _local(
        model, endpoint.litellm_model, endpoint.api_base, endpoint.api_key, endpoint.notice
    )


def _local(
    model: str, litellm_model: str, api_base: str | None, api_key: str, notice: str | None
) -> Target:
    return Target(
        model=model,
        provider=LOCAL,
        litellm_model=litellm_model,
        api_key=api_key,
        api_base=api_base,
        key_source="the local model",
        key_owner=None,
        notice=notice,
    )


class Keys:
    """Resolves targets, caching each for 30 s per workspace, model and credential (so a
    rotated or deleted key applies within 30 s)."""

    def __init__(
        self,
        db: Database,
        settings: LlmSettings,
        vault: Vault | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._settings = settings
        self._vault = vault
        self._clock = clock
        self._cached: dict[tuple[UUID, str, str | None], tuple[float, Target]] = {}

    async def target(
        self, workspace_id: UUID, model: str, credential_id: str | None, *, embedding: bool = False
    ) -> Target:
        provider = provider_of(model)
        if provider == LOCAL:
            return await local_target(model, embedding=embedding)
        key = (workspace_id, model, credential_id)
        hit = self._cached.get(key)
        now = self._clock()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        found = await asyncio.to_thread(self._workspace_key, workspace_id, provider, credential_id)
        if found is not None:
            name, credential, allowlist = found
            api_base = str(credential.api_base).rstrip("/") if credential.api_base else None
            if api_base is not None:
                await _check_api_base(api_base, allowlist)
            target = Target(
                model=model,
                provider=provider,
                litellm_model=model,
                api_key=credential.api_key.get_secret_value(),
                api_base=api_base,
                key_source=f"credential {name!r} (llm_api_key, provider {provider})",
                key_owner=workspace_id,
            )
        else:
            target = self._platform_target(model, provider)
        if len(self._cached) >= MAX_CACHED:
            self._cached.clear()
        self._cached[key] = (now, target)
        return target

    def _platform_target(self, model: str, provider: str) -> Target:
        secret = self._settings.llm_api_keys.get(provider)
        if secret is None:
            raise LlmKeyMissing(
                f"No API key for provider {provider!r} (model {model}): this workspace has "
                "no llm_api_key credential for it, and the platform sets none.",
                solution=f"Add a credential of type llm_api_key with provider {provider!r} "
                "(POST /v1/credentials), or set the platform key in LOOM_LLM_API_KEYS "
                f'(JSON, e.g. {{"{provider}": "..."}}).',
            )
        return Target(
            model=model,
            provider=provider,
            litellm_model=model,
            api_key=secret.get_secret_value(),
            api_base=self._settings.llm_api_bases.get(provider),
            key_source=f"the platform key for {provider} (LOOM_LLM_API_KEYS)",
            key_owner=None,
        )

    def _workspace_key(
        self, workspace_id: UUID, provider: str, credential_id: str | None
    ) -> tuple[str, LlmApiKey, list[str]] | None:
        """The workspace's key for ``provider``: the named credential if it is for this
        provider, else the first llm_api_key credential for it by name."""
        with self._db.tenant(workspace_id) as conn:
            rows = credentials_repo.list_credentials(conn)
            allowlist = outbound_allowlist(conn)
        candidates = [r for r in rows if r["type"] == CredentialType.LLM_API_KEY.value]
        if credential_id is not None:
            named = _named(rows, credential_id)
            candidates = [named, *(r for r in candidates if r["id"] != named["id"])]
        for row in candidates:
            data = resolve(self._db, workspace_id, row["id"], vault=self._vault)
            if isinstance(data, LlmApiKey) and data.provider == provider:
                return row["name"], data, allowlist
        return None


def _named(rows: list[dict[str, object]], credential_id: str) -> dict[str, object]:
    try:
        wanted = UUID(str(credential_id))
    except ValueError:
        raise InvalidInput(
            f"Credential id {credential_id!r} is not a UUID.",
            solution="Use the id that POST /v1/credentials returned.",
        ) from None
    for row in rows:
        if row["id"] == wanted:
            if row["type"] != CredentialType.LLM_API_KEY.value:
                raise InvalidInput(
                    f"Credential {row['name']!r} is a {row['type']} credential, not an "
                    "llm_api_key.",
                    solution="Create a credential of type llm_api_key (provider, api_key, "
                    "optional api_base) and name that one.",
                )
            return row
    raise InvalidInput(
        f"Credential {credential_id} not found in this workspace.",
        solution="GET /v1/credentials lists this workspace's credentials.",
    )


async def _check_api_base(api_base: str, allowlist: list[str]) -> None:
    """A workspace's api_base is outbound traffic like any node's: internal addresses only
    when the workspace allowlists them, metadata endpoints never. litellm connects on its
    own, so a name that resolves differently later is not caught (unlike ``loom.net``)."""
    target = parse_url(api_base, what="api_base of the llm_api_key credential")
    admitted = Allowlist(allowlist)
    addresses = (
        [str(target.address)]
        if target.address is not None
        else await system_resolver(target.host, target.port)
    )
    for address in addresses:
        check_address(target, ip_address(address), admitted)


def check_chat_model(model: str, local_model_file: Path | None) -> None:
    """Refuse, when a spec is saved, a chat model no call could reach: an unknown provider
    or an unknown local model (``LlmModelUnknown``, which says how to name one)."""
    if provider_of(model) != LOCAL:
        return
    from loom.llm.local.models import UnknownLocalModel, chat_model

    try:
        chat_model(model.removeprefix(f"{LOCAL}/"), local_model_file)
    except UnknownLocalModel as exc:
        raise LlmModelUnknown(exc.message, solution=exc.solution) from None
