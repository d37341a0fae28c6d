"""Blob store for values too large to travel or sit in a row (node outputs over the
threshold, 256 KiB by default: the Step Functions payload limit).

Locally files under ``LOOM_HOME/blobs``; on AWS, S3 (``loom.runtime.aws``). Keys start with
the workspace id, and reading checks it, so one workspace cannot name another's blob.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from uuid import UUID

from loom.config import Settings
from loom.errors import LoomError, NotFound

_KEY = re.compile(r"^[0-9a-f-]{36}(/[A-Za-z0-9_.:-]{1,200}){1,8}$")


@dataclass(frozen=True)
class StoredBlob:
    key: str
    size_bytes: int
    sha256: str
    store: str


class BlobStore(Protocol):
    name: str

    def put(self, workspace_id: UUID, key: str, data: bytes) -> StoredBlob: ...

    def get(self, workspace_id: UUID, key: str) -> bytes: ...


def blob_key(workspace_id: UUID, *parts: str) -> str:
    key = "/".join((str(workspace_id), *parts))
    if not _KEY.match(key):
        raise LoomError(f"Invalid blob key {key!r}.", solution="Report this as a bug.")
    return key


def check_key(workspace_id: UUID, key: str) -> None:
    """Refuse a key that is malformed or names another workspace's blob."""
    if not key.startswith(f"{workspace_id}/") or not _KEY.match(key):
        raise NotFound(f"Blob {key} not found.", solution="Check the reference.")


def blob_store_for(settings: Settings) -> BlobStore:
    """S3 when ``LOOM_BLOB_BUCKET`` is set (on AWS), else files under ``LOOM_HOME/blobs``."""
    if settings.blob_bucket:
        from loom.runtime.aws.blobs import S3BlobStore

        return S3BlobStore(settings.blob_bucket)
    return LocalBlobStore(settings.home.resolve() / "blobs")


class LocalBlobStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, workspace_id: UUID, key: str) -> Path:
        check_key(workspace_id, key)
        return self.root / key

    def put(self, workspace_id: UUID, key: str, data: bytes) -> StoredBlob:
        path = self._path(workspace_id, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        Path(tmp.name).replace(path)
        return StoredBlob(key, len(data), hashlib.sha256(data).hexdigest(), self.name)

    def get(self, workspace_id: UUID, key: str) -> bytes:
        try:
            return self._path(workspace_id, key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"Blob {key} not found.", solution="Check the reference.") from None
