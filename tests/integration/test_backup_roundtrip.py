"""Encrypted backups to a real SeaweedFS under Object Lock, restored and verified."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from dereg.backup.archive import create_backup
from dereg.backup.restore import restore_and_verify
from dereg.backup.s3 import S3Location
from dereg.demo.seed import planted_values, seed
from dereg.errors import BackupError, KeyringError
from dereg.evidence.store import open_store
from dereg.keys import Keyring
from dereg.stack.ports import free_port

pytestmark = pytest.mark.integration


def _location(seaweed, bucket: str) -> S3Location:
    return S3Location(
        seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket, "closures/t"
    )


def _small_source(url: str) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    parent = sa.Table(
        "parent",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40)),
        sa.Column("born", sa.Date),
        sa.Column("fee", sa.Numeric(10, 2)),
        sa.Column("photo", sa.LargeBinary),
        sa.Column("active", sa.Boolean),
        sa.Column("score", sa.Float),
        sa.Column("seen", sa.DateTime),
    )
    child = sa.Table(
        "child",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id")),
        sa.Column("note", sa.Text),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            parent.insert(),
            [
                {
                    "id": 1,
                    "name": "张伟",
                    "born": dt.date(2015, 3, 1),
                    "fee": Decimal("1800.50"),
                    "photo": os.urandom(300),
                    "active": True,
                    "score": 0.1 + 0.2,
                    "seen": dt.datetime(2026, 1, 2, 3, 4, 5),
                },
                {
                    "id": 2,
                    "name": None,
                    "born": None,
                    "fee": None,
                    "photo": None,
                    "active": None,
                    "score": None,
                    "seen": None,
                },
            ],
        )
        conn.execute(
            child.insert(),
            [{"id": i, "parent_id": 1 + i % 2, "note": f"备注 {i} " * 5} for i in range(1, 301)],
        )
    engine.dispose()


def test_backup_restores_and_verifies_and_is_locked(
    seaweed, s3_client, bucket_name, sqlite_url, store_url, keyring
):
    _small_source(sqlite_url)
    store = open_store(store_url)
    location = _location(seaweed, bucket_name)
    engine = sa.create_engine(sqlite_url)
    record = create_backup(
        engine,
        company_id="c1",
        run_id="r1",
        source_id="db",
        location=location,
        keyring=keyring,
        store=store,
        retention_days=1,
        object_lock=True,
    )
    assert record.total_rows == 302 and not record.reused
    assert record.tables["child"]["rows"] == 300

    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems
    assert report.tables["parent"]["restored_sha256"] == report.tables["parent"]["expected_sha256"]

    # every data object and the manifest are under a compliance lock: a version cannot be deleted
    manifest_key = record.manifest_key
    retention = s3_client.get_object_retention(Bucket=bucket_name, Key=manifest_key)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    versions = s3_client.list_object_versions(Bucket=bucket_name, Prefix=manifest_key)["Versions"]
    with pytest.raises(ClientError):
        s3_client.delete_object(Bucket=bucket_name, Key=manifest_key, VersionId=versions[0]["VersionId"])

    # a retried task reuses the complete backup of its run
    again = create_backup(
        engine,
        company_id="c1",
        run_id="r1",
        source_id="db",
        location=location,
        keyring=keyring,
        store=store,
        retention_days=1,
        object_lock=True,
    )
    assert again.reused and again.backup_id == record.backup_id


def test_a_flipped_byte_fails_naming_the_chunk(
    seaweed, s3_client, bucket_name, sqlite_url, store_url, keyring
):
    _small_source(sqlite_url)
    store = open_store(store_url)
    location = _location(seaweed, bucket_name)
    record = create_backup(
        sa.create_engine(sqlite_url),
        company_id="c1",
        run_id="r1",
        source_id="db",
        location=location,
        keyring=keyring,
        store=store,
        retention_days=1,
        object_lock=False,
    )
    key = location.key(record.backup_id, "data", "child", "000000.chunk")
    blob = bytearray(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    blob[40] ^= 0x01
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=bytes(blob))
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert not report.ok
    assert any("child: chunk 0" in p and key in p and "authentication" in p for p in report.problems)
    assert report.tables["parent"]["ok"]


def test_a_wrong_keyring_is_a_clear_error(seaweed, bucket_name, sqlite_url, store_url, keyring, tmp_path):
    _small_source(sqlite_url)
    store = open_store(store_url)
    location = _location(seaweed, bucket_name)
    record = create_backup(
        sa.create_engine(sqlite_url),
        company_id="c1",
        run_id="r1",
        source_id="db",
        location=location,
        keyring=keyring,
        store=store,
        retention_days=1,
        object_lock=False,
    )
    other = Keyring.create(tmp_path / "other.json")
    with pytest.raises(KeyringError, match="is not in keyring"):
        restore_and_verify(record.backup_id, location=location, keyring=other, store=store)


def test_a_bucket_without_object_lock_is_refused(
    seaweed, s3_client, bucket_name, sqlite_url, store_url, keyring
):
    _small_source(sqlite_url)
    s3_client.create_bucket(Bucket=bucket_name)
    with pytest.raises(BackupError, match="has no Object Lock"):
        create_backup(
            sa.create_engine(sqlite_url),
            company_id="c1",
            run_id="r1",
            source_id="db",
            location=_location(seaweed, bucket_name),
            keyring=keyring,
            store=open_store(store_url),
            retention_days=1,
            object_lock=True,
        )
    assert s3_client.list_objects_v2(Bucket=bucket_name).get("KeyCount", 0) == 0


def test_an_unreachable_store_fails_fast(sqlite_url, store_url, keyring):
    _small_source(sqlite_url)
    location = S3Location(f"http://127.0.0.1:{free_port()}", "k", "s", "cn-north-1", "dereg-x", "p")
    with pytest.raises(BackupError, match="unreachable"):
        create_backup(
            sa.create_engine(sqlite_url),
            company_id="c1",
            run_id="r1",
            source_id="db",
            location=location,
            keyring=keyring,
            store=open_store(store_url),
            retention_days=1,
            object_lock=True,
        )


def test_postgresql_demo_school_round_trips_without_personal_values_in_clear(
    seaweed, s3_client, bucket_name, pg_url, store_url, keyring
):
    seed(pg_url, students=80)
    store = open_store(store_url)
    location = _location(seaweed, bucket_name)
    engine = sa.create_engine(pg_url)
    record = create_backup(
        engine,
        company_id="c1",
        run_id="r1",
        source_id="db",
        location=location,
        keyring=keyring,
        store=store,
        retention_days=1,
        object_lock=True,
    )
    engine.dispose()
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems
    assert report.tables["students"]["restored_rows"] == 80
    # nothing in the bucket (manifest, escrow, chunks) holds a personal value in clear
    planted = [v.encode() for values in planted_values(pg_url).values() for v in values]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket_name)["Contents"]]
    assert any(k.endswith("manifest.json") for k in keys) and any("/_escrow/" in k for k in keys)
    for key in keys:
        body = s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read()
        assert not [v for v in planted if v in body], key
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    assert manifest["tables"]["students"]["rows"] == 80 and manifest["cipher"] == "AES-256-GCM"
