"""The KMS key provider against a real KMS API on loopback (moto_server), with backups in SeaweedFS."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from dereg.backup.restore import restore_and_verify
from dereg.errors import KeyringError
from dereg.keys_kms import KmsKeyProvider, backup_key_provider
from devtools.stack.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kms_endpoint():
    server = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    port = free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _kms(endpoint).list_keys()
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("moto_server did not start")
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.kill()  # our own moto_server; it ignores SIGTERM for seconds
        proc.wait(timeout=10)


def _kms(endpoint: str):
    return boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name="cn-north-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )


@pytest.fixture
def store_url(pg_url) -> str:
    """The compliance store on PostgreSQL, as deployed: a KMS key's ARN and wrap must fit its columns."""
    return pg_url


@pytest.fixture
def kms_key(kms_endpoint) -> str:
    return _kms(kms_endpoint).create_key(Description="dereg test")["KeyMetadata"]["Arn"]


def test_a_backup_wrapped_by_kms_restores_and_other_keys_or_altered_wraps_are_refused(
    sqlite_url, planted, take_backup, location, store, s3_client, bucket_name, kms_endpoint, kms_key, keyring
):
    provider = KmsKeyProvider(kms_key, client=_kms(kms_endpoint))
    assert provider.active_kek_id() == f"kms:{kms_key}"
    record = take_backup(sqlite_url, keyring=provider)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    assert manifest["kek_id"] == f"kms:{kms_key}"
    escrow = json.loads(s3_client.get_object(Bucket=bucket_name, Key=manifest["escrow_key"])["Body"].read())
    assert escrow["kek_id"] == f"kms:{kms_key}" and escrow["wrap"].startswith("AWS KMS Encrypt")

    fresh = KmsKeyProvider(kms_key, client=_kms(kms_endpoint))  # nothing cached: KMS does the unwrapping
    report = restore_and_verify(record.backup_id, location=location, keyring=fresh, store=store)
    assert report.ok, report.problems

    # a backup made with the keyring is not silently read with KMS, nor the other way round
    with pytest.raises(KeyringError, match="kms:"):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)

    # a wrapped key altered in the store does not unwrap, and says so
    kek_id, wrapped = fresh.wrap_data_key(b"\x01" * 32)
    tampered = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises(KeyringError, match="refused to unwrap a data key"):
        fresh.unwrap_data_key(kek_id, tampered, what="a data key")

    other = _kms(kms_endpoint).create_key()["KeyMetadata"]["Arn"]
    with pytest.raises(KeyringError, match="refused to unwrap"):
        KmsKeyProvider(other, client=_kms(kms_endpoint)).unwrap_data_key(
            f"kms:{other}", fresh.wrap_data_key(b"\x01" * 32)[1], what="a data key"
        )


def test_the_provider_is_chosen_by_environment(monkeypatch, kms_endpoint, kms_key, keyring):
    monkeypatch.setenv("DEREG_KMS_KEY_ID", kms_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", kms_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # the S3 store's, not the KMS's
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "t")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "t")
    provider = backup_key_provider()
    assert isinstance(provider, KmsKeyProvider)
    kek_id, wrapped = provider.wrap_data_key(b"\x02" * 32)
    assert provider.unwrap_data_key(kek_id, wrapped) == b"\x02" * 32
    monkeypatch.delenv("DEREG_KMS_KEY_ID")
    monkeypatch.setenv("DEREG_KEYRING", str(keyring.path))
    assert backup_key_provider().active_kek_id() == keyring.active_kek


def test_a_kms_key_rotates_inside_the_kms_and_backups_restore_across_it(
    sqlite_url, planted, take_backup, location, store, s3_client, bucket_name, kms_endpoint, kms_key
):
    from dereg.backup import catalog
    from dereg.evidence.ledger import Ledger
    from dereg.rotation import rewrap_backups, rotate_keyring

    kms = _kms(kms_endpoint)
    provider = KmsKeyProvider(kms_key, client=kms)
    record = take_backup(sqlite_url, keyring=provider)
    escrow_key = location.key("_escrow", f"{record.backup_id}.json")

    def escrow() -> dict:
        return json.loads(s3_client.get_object(Bucket=bucket_name, Key=escrow_key)["Body"].read())

    def stored_wrap() -> str:
        with store.connect() as conn:
            return conn.execute(
                sa.select(catalog.backup_keys.c.wrapped_key).where(
                    catalog.backup_keys.c.backup_id == record.backup_id
                )
            ).scalar_one()

    assert provider.current_since() is None and "wrapped_at" in escrow()
    assert rewrap_backups(store, provider, location)["rewrapped"] == {}  # never rotated: nothing stale

    rotated = rotate_keyring(provider, grace_days=30, store=store, actor="test")
    assert rotated["material_rotated"] and rotated["retired_kek"] is None
    assert rotated["new_kek"] == f"kms:{kms_key}"
    assert len(kms.list_key_rotations(KeyId=kms_key)["Rotations"]) == 1  # the KMS itself rotated
    before = escrow()["wrapped_key"]

    done = rewrap_backups(store, provider, location, actor="test")
    assert sum(done["rewrapped"].values()) == 1
    after = escrow()
    assert after["wrapped_key"] != before and after["kek_id"] == f"kms:{kms_key}" and after["rewrapped_at"]
    assert stored_wrap() == after["wrapped_key"]  # the store row holds the same new wrap (kms ARN fits)
    assert rewrap_backups(store, provider, location)["rewrapped"] == {}  # a retry finds nothing left

    report = restore_and_verify(
        record.backup_id, location=location, keyring=KmsKeyProvider(kms_key, client=kms), store=store
    )
    assert report.ok, report.problems
    events = {(e.stage, e.event) for e in Ledger(store).entries()}
    assert {("key_rotation", "rotated"), ("key_rotation", "rewrapped")} <= events
