"""The S3 blob store: the same keys as the local one (workspace id first), one bucket."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

from loom.blobs import StoredBlob, check_key
from loom.errors import NotFound
from loom.runtime.aws.clients import client, error_code


class S3BlobStore:
    name = "s3"

    def __init__(self, bucket: str, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._s3 = s3

    @property
    def s3(self) -> Any:
        return self._s3 or client("s3")

    def put(self, workspace_id: UUID, key: str, data: bytes) -> StoredBlob:
        check_key(workspace_id, key)
        digest = hashlib.sha256(data).hexdigest()
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="application/json",
            Metadata={"sha256": digest},
        )
        return StoredBlob(key, len(data), digest, self.name)

    def get(self, workspace_id: UUID, key: str) -> bytes:
        check_key(workspace_id, key)
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                raise NotFound(f"Blob {key} not found.", solution="Check the reference.") from None
            raise
        return body
