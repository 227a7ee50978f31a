"""create_backup and restore_and_verify against a real SeaweedFS (and PostgreSQL, MariaDB)."""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError, EndpointConnectionError

from dereg.backup import archive, catalog, restore, writer
from dereg.backup.restore import restore_and_verify
from dereg.connections import S3Location
from dereg.errors import BackupError, KeyringError
from dereg.evidence.store import open_store
from devtools.stack.ports import free_port

pytestmark = pytest.mark.integration


def _body(s3_client, bucket: str, key: str) -> bytes:
    return s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()


def _all_keys(s3_client, bucket: str) -> list[str]:
    return [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
def scratch_dirs(monkeypatch):
    """Record every scratch directory restore creates."""
    made = []
    real = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        path = real(*args, **kwargs)
        made.append(path)
        return path

    monkeypatch.setattr(restore.tempfile, "mkdtemp", mkdtemp)
    return made


def test_sqlite_backup_is_locked_restores_exactly_and_is_reused(
    sqlite_url, planted, take_backup, location, keyring, store, s3_client, bucket_name, scratch_dirs
):
    lines: list[str] = []
    record = take_backup(sqlite_url, object_lock=True, progress=lines.append)
    assert not record.reused and record.object_lock
    assert {n: t["rows"] for n, t in record.tables.items()} == {
        "guardians": 2,
        "students": 2,
        "payments": 201,
    }
    assert record.total_rows == 205
    assert any(line.startswith("backup payments: 201 rows") for line in lines)

    # catalog: complete, and the wrapped key is stored there (not in the manifest)
    row = catalog.get(store, record.backup_id)
    assert row["status"] == "complete" and row["total_rows"] == 205 and row["completed_at"]
    kek_id, wrapped = catalog.wrapped_key(store, record.backup_id)
    assert kek_id == keyring.active_kek_id()
    manifest = json.loads(_body(s3_client, bucket_name, record.manifest_key))
    assert manifest["kek_id"] == kek_id and wrapped not in json.dumps(manifest)
    assert manifest["table_order"].index("guardians") < manifest["table_order"].index("students")
    assert manifest["table_order"].index("students") < manifest["table_order"].index("payments")
    assert manifest["tables"]["students"]["foreign_keys"] == [
        {"columns": ["guardian_id"], "ref_table": "guardians", "ref_columns": ["id"]}
    ]

    # chunks and manifest are under a compliance lock; a chunk version cannot be deleted
    chunk = manifest["tables"]["payments"]["chunks"][0]
    assert chunk == location.key(record.backup_id, "data", "payments", "000000.chunk")
    for key in (chunk, record.manifest_key):
        retention = s3_client.get_object_retention(Bucket=bucket_name, Key=key)["Retention"]
        assert retention["Mode"] == "COMPLIANCE"
        assert retention["RetainUntilDate"].isoformat()[:16] == record.retain_until[:16]
    version = s3_client.list_object_versions(Bucket=bucket_name, Prefix=chunk)["Versions"][0]["VersionId"]
    with pytest.raises(ClientError) as denied:
        s3_client.delete_object(Bucket=bucket_name, Key=chunk, VersionId=version)
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert _body(s3_client, bucket_name, chunk)  # still there

    # the escrow copy is outside the backup's prefix and NOT locked (so it can be shredded)
    escrow_key = location.key("_escrow", f"{record.backup_id}.json")
    assert manifest["escrow_key"] == escrow_key and f"/{record.backup_id}/" not in escrow_key
    escrow = json.loads(_body(s3_client, bucket_name, escrow_key))
    assert escrow["kek_id"] == kek_id and escrow["wrapped_key"] == wrapped
    with pytest.raises(ClientError):
        s3_client.get_object_retention(Bucket=bucket_name, Key=escrow_key)

    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, progress=lines.append
    )
    assert report.ok, report.problems
    assert set(report.tables) == {"guardians", "students", "payments"}
    for name, t in report.tables.items():
        assert t["ok"] and t["restored_sha256"] == manifest["tables"][name]["sha256"]
        assert t["restored_rows"] == t["expected_rows"] == record.tables[name]["rows"]
    assert scratch_dirs and not any(os.path.exists(d) for d in scratch_dirs)

    again = take_backup(sqlite_url, object_lock=True)
    assert again.reused and again.backup_id == record.backup_id and again.tables == record.tables
    assert len(catalog.list_backups(store)) == 1


def test_manifest_escrow_and_chunks_hold_no_personal_values(
    sqlite_url, planted, take_backup, s3_client, bucket_name, capsys
):
    record = take_backup(sqlite_url, classification_summary={"personal_columns": 7, "minors": 2})
    keys = _all_keys(s3_client, bucket_name)
    assert record.manifest_key in keys and any("/_escrow/" in k for k in keys)
    needles = [v.encode() for v in planted]
    for key in keys:
        body = _body(s3_client, bucket_name, key)
        # a bare assert would print the matching value; report only the object key
        assert not any(v in body for v in needles), f"a planted value is in clear in {key}"
    manifest = json.loads(_body(s3_client, bucket_name, record.manifest_key))
    assert manifest["classification_summary"] == {"personal_columns": 7, "minors": 2}
    out = capsys.readouterr()
    assert not any(v in out.out + out.err for v in planted)


def test_multi_chunk_table_restores_and_reordered_or_missing_chunks_are_named(
    sqlite_url, planted, take_backup, location, keyring, store, s3_client, bucket_name, monkeypatch
):
    monkeypatch.setattr(writer, "CHUNK_BYTES", 2048)
    record = take_backup(sqlite_url)
    manifest = json.loads(_body(s3_client, bucket_name, record.manifest_key))
    chunks = manifest["tables"]["payments"]["chunks"]
    assert len(chunks) >= 3 and record.tables["payments"]["chunks"] == len(chunks)
    assert chunks == sorted(chunks) and chunks[-1].endswith(f"{len(chunks) - 1:06d}.chunk")
    assert restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store).ok

    # swap chunks 0 and 1: each is intact but bound to its position
    first, second = (_body(s3_client, bucket_name, k) for k in chunks[:2])
    s3_client.put_object(Bucket=bucket_name, Key=chunks[0], Body=second)
    s3_client.put_object(Bucket=bucket_name, Key=chunks[1], Body=first)
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert not report.ok
    assert any(f"payments: chunk 0 ({chunks[0]})" in p and "authentication" in p for p in report.problems)
    assert report.tables["payments"]["restored_rows"] == 0 and report.tables["guardians"]["ok"]

    # put them back, then lose the last chunk
    s3_client.put_object(Bucket=bucket_name, Key=chunks[0], Body=first)
    s3_client.put_object(Bucket=bucket_name, Key=chunks[1], Body=second)
    s3_client.delete_object(Bucket=bucket_name, Key=chunks[-1])
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert not report.ok
    assert any(f"chunk {len(chunks) - 1} ({chunks[-1]}) cannot be read" in p for p in report.problems)
    payments = report.tables["payments"]
    assert 0 < payments["restored_rows"] < payments["expected_rows"] and not payments["ok"]
    assert not any(v in "\n".join(report.problems) for v in planted)


def test_a_flipped_byte_is_reported_and_the_scratch_file_is_removed(
    sqlite_url, planted, take_backup, location, keyring, store, s3_client, bucket_name, scratch_dirs
):
    record = take_backup(sqlite_url)
    key = location.key(record.backup_id, "data", "students", "000000.chunk")
    blob = bytearray(_body(s3_client, bucket_name, key))
    blob[len(blob) // 2] ^= 0x80
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=bytes(blob))
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert not report.ok and not report.tables["students"]["ok"]
    assert [p for p in report.problems if key in p and "chunk 0" in p]
    assert report.tables["guardians"]["ok"] and report.tables["payments"]["ok"]
    assert len(scratch_dirs) == 1 and not os.path.exists(scratch_dirs[0])


def test_the_scratch_file_is_removed_when_the_restore_crashes(
    sqlite_url, planted, take_backup, location, keyring, store, scratch_dirs, monkeypatch
):
    record = take_backup(sqlite_url)
    real_get = restore._get

    def flaky_get(client, loc, key):
        if key.endswith(".chunk") and "/payments/" in key:
            raise EndpointConnectionError(endpoint_url=loc.endpoint_url)
        return real_get(client, loc, key)

    monkeypatch.setattr(restore, "_get", flaky_get)
    with pytest.raises(EndpointConnectionError):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert len(scratch_dirs) == 1 and not os.path.exists(scratch_dirs[0])


def test_restore_falls_back_to_escrow_and_fails_clearly_once_shredded(
    sqlite_url, planted, take_backup, location, keyring, s3_client, bucket_name, tmp_path
):
    record = take_backup(sqlite_url)
    elsewhere = open_store(f"sqlite:///{tmp_path / 'other-store.db'}")  # knows nothing of this backup
    assert restore_and_verify(record.backup_id, location=location, keyring=keyring, store=elsewhere).ok
    s3_client.delete_object(Bucket=bucket_name, Key=location.key("_escrow", f"{record.backup_id}.json"))
    with pytest.raises(KeyringError, match="crypto-shredded"):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=elsewhere)
    elsewhere.dispose()


def test_a_failed_backup_is_marked_failed_and_not_reused(sqlite_url, planted, take_backup, store):
    with pytest.raises(BackupError, match="do not exist in the source"):
        take_backup(sqlite_url, tables=["guardians", "no_such_table"])
    [failed] = catalog.list_backups(store, status="failed")
    assert failed["error"] and failed["completed_at"] is None
    retry = take_backup(sqlite_url, tables=["guardians", "students"])
    assert not retry.reused and retry.backup_id != failed["backup_id"]
    assert set(retry.tables) == {"guardians", "students"}


def test_loosely_typed_sqlite_values_are_kept_not_truncated(
    sqlite_url, take_backup, location, keyring, store
):
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, x REAL)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1, 7, 2.5), (2, 1.5, 'n/a'), (3, 'abc', 3)")
    engine.dispose()
    record = take_backup(sqlite_url)
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems


def test_an_unparseable_stored_value_fails_without_quoting_it(sqlite_url, take_backup, store):
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE kids (id INTEGER PRIMARY KEY, born DATE)")
        conn.exec_driver_sql("INSERT INTO kids VALUES (1, '2016-04-11'), (2, '13912345678')")
    engine.dispose()
    with pytest.raises(BackupError, match="table kids") as failed:
        take_backup(sqlite_url)
    assert "13912345678" not in str(failed.value)
    [row] = catalog.list_backups(store, status="failed")
    assert "13912345678" not in row["error"]


def test_a_bucket_without_object_lock_is_refused_before_any_upload(
    sqlite_url, planted, take_backup, store, s3_client, bucket_name
):
    s3_client.create_bucket(Bucket=bucket_name)
    with pytest.raises(BackupError, match="has no Object Lock") as refused:
        take_backup(sqlite_url, object_lock=True)
    assert "object_lock" in str(refused.value)
    assert s3_client.list_objects_v2(Bucket=bucket_name).get("KeyCount", 0) == 0
    assert catalog.list_backups(store, status=None) == []


def test_an_unreachable_endpoint_fails_fast_without_credentials(sqlite_url, planted, keyring, store):
    endpoint = f"http://127.0.0.1:{free_port()}"
    location = S3Location(endpoint, "AKIDSECRETID", "s3cr3t-value", "cn-north-1", "dereg-x", "p")
    t0 = time.monotonic()
    with pytest.raises(BackupError, match="unreachable") as failed:
        archive.create_backup(
            sa.create_engine(sqlite_url),
            company_id="school-1",
            run_id="run-1",
            source_id="db",
            location=location,
            keyring=keyring,
            store=store,
            retention_days=1,
            object_lock=True,
        )
    assert time.monotonic() - t0 < 15
    message = str(failed.value)
    assert endpoint in message and "s3cr3t-value" not in message and "AKIDSECRETID" not in message


def test_an_unknown_manifest_version_is_refused(location, keyring, store, s3_client, bucket_name):
    s3_client.create_bucket(Bucket=bucket_name)
    key = location.key("bk-future", "manifest.json")
    s3_client.put_object(
        Bucket=bucket_name, Key=key, Body=json.dumps({"format": "dereg-backup", "version": 99}).encode()
    )
    with pytest.raises(BackupError, match="not a version 1, 2, 3, 4, 5, 6 or 7 Dereg backup manifest"):
        restore_and_verify("bk-future", location=location, keyring=keyring, store=store)


def test_postgresql_source_round_trips_and_restores_into_postgresql(
    pg_url, make_source, take_backup, location, keyring, store
):
    planted = make_source(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:  # PostgreSQL-only types
        conn.exec_driver_sql(
            "CREATE TABLE extras (code text PRIMARY KEY, at timestamptz, doc jsonb, tags text[], "
            "ratio real, big numeric(30, 10))"
        )
        conn.exec_driver_sql(
            "INSERT INTO extras VALUES ('b', '2026-01-02 03:04:05.5+08', '{\"z\": 1, \"a\": [\"学\"]}', "
            "'{x,y}', 0.1, 12345678901234567890.0123456789), ('A', NULL, NULL, NULL, NULL, NULL)"
        )
    engine.dispose()
    record = take_backup(pg_url, object_lock=True)
    assert record.tables["extras"]["rows"] == 2 and record.tables["payments"]["rows"] == 201
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems

    # restoring into a given database (here a second PostgreSQL database) verifies too
    into = pg_url + "_into"
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{into.rsplit("/", 1)[1]}"')
    try:
        report = restore_and_verify(
            record.backup_id, location=location, keyring=keyring, store=store, into_url=into
        )
        assert report.ok, report.problems
        check = sa.create_engine(into)
        with check.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM payments").scalar() == 201
        check.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{into.rsplit("/", 1)[1]}" WITH (FORCE)')
        admin.dispose()
    assert not any(v in "\n".join(report.problems) for v in planted)


def test_mariadb_source_round_trips(mariadb_url, make_source, take_backup, location, keyring, store):
    make_source(mariadb_url)
    record = take_backup(mariadb_url)
    assert record.total_rows == 205
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems
