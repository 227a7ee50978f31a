"""A backup taken in parts (the closure DAG's backup_prepare -> backup_part (mapped) -> backup):
a part that failed or never ran leaves the backup incomplete, nothing marked complete and no
manifest; a retry of that part alone completes it, and the manifest lists exactly the parts'
chunks. Calls the functions (as the workers do), not a DAG run."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from dereg.backup import catalog, parts
from dereg.backup.restore import restore_and_verify
from dereg.errors import BackupError

pytestmark = pytest.mark.integration


def test_a_failed_part_leaves_the_backup_incomplete_and_its_retry_completes_it(
    pg_url, make_source, location, keyring, store, s3_client, bucket_name, monkeypatch
):
    planted = make_source(pg_url)
    engine = sa.create_engine(pg_url)
    common = dict(store=store, location=location, keyring=keyring)
    prepared = parts.prepare_backup(
        engine,
        company_id="school-1",
        run_id="run-parts",
        source_id="db",
        retention_days=1,
        object_lock=True,
        rows_per_part=100,
        row_counts={"guardians": 2, "students": 2, "payments": 201},
        **common,
    )
    backup_id = prepared["backup_id"]
    assert prepared["parts"] == [["payments"], ["guardians", "students"]]  # largest first, small grouped
    assert catalog.get(store, backup_id)["status"] == "started"

    # part 0 fails in the middle of its table (a worker's error): the backup stays in progress
    def broken(*args, **kwargs):
        raise RuntimeError("connection lost")

    with monkeypatch.context() as m:
        m.setattr(parts.pgcopy, "dump_tables", broken)
        with pytest.raises(BackupError, match="part is not stored") as failed:
            parts.backup_part(engine, backup_id, 0, **common)
    assert "RuntimeError" in str(failed.value) and catalog.get(store, backup_id)["status"] == "started"
    parts.backup_part(engine, backup_id, 1, **common)
    with pytest.raises(BackupError, match=r"incomplete: 1 of 2 part\(s\) not stored: part 0 \(payments\)"):
        parts.finish_backup(backup_id, **common)
    assert catalog.get(store, backup_id)["status"] == "started"
    manifest_key = location.key(backup_id, "manifest.json")
    listed = s3_client.list_objects_v2(Bucket=bucket_name, Prefix=manifest_key)
    assert listed.get("KeyCount", 0) == 0  # no manifest while a part is missing

    # the retry redoes part 0 only; then the backup completes
    done = parts.backup_part(engine, backup_id, 0, **common)
    assert done["rows"] == 201 and done["tables"] == 1
    record = parts.finish_backup(backup_id, **common)
    assert catalog.get(store, backup_id)["status"] == "complete"
    assert record.total_rows == 2 + 2 + 201
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=manifest_key)["Body"].read())
    assert manifest["table_order"] == ["guardians", "students", "payments"]
    assert "schema" in manifest or "schema_missing" in manifest
    # the manifest names exactly the chunks the parts stored (small tables' in packs), and every
    # one of them is locked
    stored = {
        o["Key"]
        for folder in ("data", "packs")
        for page in s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket_name, Prefix=location.key(backup_id, folder)
        )
        for o in page.get("Contents", [])
    }
    assert stored == {c for t in manifest["tables"].values() for c in t["chunks"]}
    retention = s3_client.get_object_retention(Bucket=bucket_name, Key=sorted(stored)[0])["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    # nothing personal in clear in the part records
    for i in (0, 1):
        key = location.key(backup_id, "parts", f"{i:05d}.sealed")
        body = s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read()
        assert not any(v.encode() in body for v in planted) and b"guardians" not in body

    report = restore_and_verify(backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems
    # a complete backup takes no more parts
    with pytest.raises(BackupError, match="is complete, not in progress"):
        parts.backup_part(engine, backup_id, 0, **common)
    engine.dispose()


def test_a_part_record_of_another_backup_is_refused(
    make_source, sqlite_url, location, keyring, store, s3_client, bucket_name
):
    make_source(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    common = dict(store=store, location=location, keyring=keyring)
    opened = [
        parts.prepare_backup(
            engine,
            company_id="school-1",
            run_id=run,
            source_id="db",
            retention_days=1,
            object_lock=False,
            rows_per_part=0,
            **common,
        )["backup_id"]
        for run in ("run-a", "run-b")
    ]
    for backup_id in opened:
        parts.backup_part(engine, backup_id, 0, **common)
    # part 0 of backup a copied over part 0 of backup b: it does not open under b's key and id
    src, dst = (location.key(b, "parts", "00000.sealed") for b in opened)
    s3_client.copy_object(Bucket=bucket_name, Key=dst, CopySource={"Bucket": bucket_name, "Key": src})
    with pytest.raises(BackupError, match="does not open under its data key"):
        parts.finish_backup(opened[1], **common)
    assert catalog.get(store, opened[1])["status"] == "started"
    assert parts.finish_backup(opened[0], **common).total_rows == 205
    engine.dispose()
