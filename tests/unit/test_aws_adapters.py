"""The AWS adapters against moto: the KMS keyring seals and opens credentials bound to
their identity, the S3 blob store keeps workspaces apart, and reports survive the trip
through the state machine, inline, staged, or as a Lambda failure."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loom.engine.run_state import Finished
from loom.errors import NotFound
from loom.runtime.aws.blobs import S3BlobStore
from loom.runtime.aws.kms import KmsKeyring
from loom.runtime.aws.wire import finished_from, report_json, stage, timestamp, unstage
from loom.secrets.keyring import CredentialUnreadable
from loom.secrets.vault import Binding, Vault

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="blobs", CreateBucketConfiguration={"LocationConstraint": REGION})
        yield {"kms": kms, "s3": s3, "key": kms.create_key()["KeyMetadata"]["Arn"]}


def _binding(workspace: uuid.UUID | None = None) -> Binding:
    return Binding(workspace or uuid.uuid4(), uuid.uuid4(), "api_key")


def test_kms_seals_and_opens_a_credential(aws: dict[str, Any]) -> None:
    vault = Vault(KmsKeyring(aws["key"], aws["kms"]))
    binding = _binding()
    sealed = vault.seal(b"sk-secret", binding)
    assert sealed.key_id == f"kms:{aws['key']}"
    assert b"sk-secret" not in sealed.wrapped_key + sealed.ciphertext
    assert vault.open(sealed, binding) == b"sk-secret"


def test_a_sealed_credential_copied_to_another_identity_does_not_open(
    aws: dict[str, Any],
) -> None:
    vault = Vault(KmsKeyring(aws["key"], aws["kms"]))
    sealed = vault.seal(b"sk-secret", _binding())
    with pytest.raises(CredentialUnreadable):
        vault.open(sealed, _binding())


def test_a_locally_sealed_credential_is_refused_with_the_reason(aws: dict[str, Any]) -> None:
    keyring = KmsKeyring(aws["key"], aws["kms"])
    with pytest.raises(CredentialUnreadable, match="not with KMS"):
        keyring.unwrap(b"wrapped", "local:0123456789abcdef", {"k": "v"})


def test_s3_blobs_round_trip_and_stay_in_their_workspace(aws: dict[str, Any]) -> None:
    store = S3BlobStore("blobs", aws["s3"])
    workspace = uuid.uuid4()
    stored = store.put(workspace, f"{workspace}/runs/r/n-1.json", b'{"a":1}')
    assert (stored.size_bytes, stored.store) == (7, "s3")
    assert store.get(workspace, stored.key) == b'{"a":1}'
    with pytest.raises(NotFound):
        store.get(uuid.uuid4(), stored.key)
    with pytest.raises(NotFound):
        store.get(workspace, f"{workspace}/runs/r/missing.json")


def test_reports_travel_inline_or_staged(aws: dict[str, Any]) -> None:
    store = S3BlobStore("blobs", aws["s3"])
    workspace, run = uuid.uuid4(), uuid.uuid4()
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    small = Finished("a", 2, "suspended", metadata={"x": 1}, expires_at=expires)
    assert finished_from(report_json(small)) == small
    assert unstage(stage(small, 10_000, store, workspace, run), store, workspace) == small
    big = Finished("b", 1, "completed", output="x" * 5000)
    staged = stage(big, 1024, store, workspace, run)
    assert set(staged) == {"node_id", "attempt", "staged"}
    assert unstage(staged, store, workspace) == big


def test_a_lambda_failure_becomes_the_nodes_retryable_failure() -> None:
    caught = {
        "node_id": "n",
        "attempt": 3,
        "mode": "task",
        "Error": "Sandbox.Timedout",
        "Cause": '{"errorMessage": "Task timed out after 900.00 seconds"}',
    }
    finished = unstage(caught, S3BlobStore("unused"), uuid.uuid4())
    assert (finished.node_id, finished.attempt, finished.outcome) == ("n", 3, "failed")
    assert finished.error is not None
    assert finished.error["code"] == "function_timeout" and finished.error["retryable"]
    assert "Task timed out after 900.00 seconds" in finished.error["message"]


def test_timestamps_are_rfc3339_in_utc() -> None:
    assert timestamp(datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2030-01-02T03:04:05.000006Z"
