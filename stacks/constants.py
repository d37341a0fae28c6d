"""Names shared by the stacks and the infra tests."""

from __future__ import annotations

SERVICE_NAME = "loom"
BLOB_BUCKET_ID = "Blobs"
# Objects under runs/ are node outputs over the payload threshold; they expire with runs.
BLOB_RETENTION_DAYS = 90
