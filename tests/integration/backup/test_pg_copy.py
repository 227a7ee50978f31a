"""Format version 2 on a real PostgreSQL and SeaweedFS: COPY text round trips with awkward values,
the scratch schema never outlives a restore, corruption and wrong keys are caught, and version 1
backups still restore."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import sqlalchemy as sa
from botocore.exceptions import EndpointConnectionError

from dereg.backup import catalog, restore
from dereg.backup.archive import table_digests
from dereg.backup.codec import associated_data, encode_row, seal
from dereg.backup.pgcopy import escape_field, unescape_field
from dereg.backup.restore import restore_and_verify
from dereg.errors import KeyringError
from dereg.keys import Keyring, new_data_key
from devtools.stack.ports import free_port

pytestmark = pytest.mark.integration

# every row of `awkward` holds something a naive COPY text or JSON handling would get wrong
AWKWARD_SQL = r"""
CREATE TYPE mood AS ENUM ('calm', 'tab	bed', 'quo"te');
CREATE TABLE awkward (
    id bigint PRIMARY KEY,
    t text,
    b bytea,
    arr text[],
    nums integer[],
    j json,
    jb jsonb,
    at timestamptz,
    ts timestamp(3),
    d date,
    n numeric(40, 12),
    f double precision,
    r real,
    iv interval,
    ok boolean,
    m mood,
    u uuid
);
INSERT INTO awkward VALUES
 (1, E'tab\there\nnew line\\back slash\rCR', '\x00015c0a09ff'::bytea, ARRAY['a,b', 'c"d', NULL, '', E'e\\f'],
  '{1,NULL,3}', '{"b": 1, "a": "x\ty"}', '{"b": 1, "a": [1, "学"]}', '2026-01-02 03:04:05.123456+08',
  '2026-01-02 03:04:05.123', '2016-04-11', 12345678901234567890.012345678901, 1.0/3.0, 0.1,
  '1 year 2 mons 3 days 04:05:06.7', true, 'tab	bed', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (2, '', ''::bytea, '{}', '{}', 'null', '[]', 'infinity', '-infinity', '-infinity', 'NaN', 'Infinity',
  '-Infinity', '-1 day', false, 'quo"te', NULL),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, E'\\N', '\x5c4e'::bytea, ARRAY[E'\\N'], NULL, '"\\N"', '"\\\\N"', '1970-01-01 00:00:00+00',
  '1970-01-01', '0001-01-01 BC', -0.000000000001, -0.0, 3.4e38, '0', NULL, 'calm', NULL),
 (5, E'王秀英 \u2028 sep \u0085 nel 🎒 \x01\x1f ctrl', '\x'::bytea, ARRAY['学生', '家长'], '{-2147483648}',
  '{"k": "v"}', '{"k": "v"}', '2026-06-30 23:59:59.999999-12', '2026-06-30 23:59:59.999', '2026-06-30',
  0, 5e-324, 1e-45, '-178000000 years', true, NULL, NULL);
CREATE TABLE no_key (note text, amount numeric);
INSERT INTO no_key SELECT 'line ' || g || E'\t' || repeat('x', mod(g, 50)), g / 7.0 FROM generate_series(1, 3000) g;
CREATE TABLE empty_one (id integer PRIMARY KEY);
"""


def _scratch_schemas(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, 'dereg_scratch_')"
            )
        ]
    engine.dispose()
    return found


@pytest.fixture
def awkward_pg(pg_url, make_source):
    planted = make_source(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(AWKWARD_SQL)
    engine.dispose()
    return planted


def test_copy_text_escaping_round_trips():
    for text in ["", "\\N", "a\tb\nc\\d\re\bf\fg\vh", "王\u2028\x01\x1f", "\\\\x00"]:
        assert unescape_field(escape_field(text).encode()) == text
    assert unescape_field(b"\\N") is None and escape_field(None) == "\\N"
    assert unescape_field(b"\\101\\x42\\q") == "ABq"  # octal, hex and a plain escaped char


def test_postgresql_backup_is_copy_text_and_restores_exactly_into_a_scratch_schema(
    pg_url, awkward_pg, take_backup, location, keyring, store, s3_client, bucket_name, monkeypatch
):
    from dereg.backup import pgcopy, writer

    monkeypatch.setattr(writer, "CHUNK_BYTES", 8192)  # no_key spans several chunks
    monkeypatch.setattr(pgcopy, "PACK_BELOW", 0)  # every table in chunks of its own (packs: below)
    lines: list[str] = []
    record = take_backup(pg_url, object_lock=True, progress=lines.append)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    assert manifest["version"] == 7 and manifest["dialect"] == "postgresql"
    assert {t["encoding"] for t in manifest["tables"].values()} == {"pg-copy-text"}
    assert manifest["pg"]["copy_settings"]["TimeZone"] == "UTC"
    assert record.tables["awkward"]["rows"] == 5 and record.tables["no_key"]["rows"] == 3000
    assert record.tables["empty_one"]["rows"] == 0 and record.tables["empty_one"]["chunks"] == 1
    assert len(manifest["tables"]["no_key"]["chunks"]) > 3
    columns = {c["name"]: c for c in manifest["tables"]["awkward"]["columns"]}
    assert columns["n"]["pg_type"] == "numeric(40,12)" and columns["m"]["pg_builtin"] is False
    assert manifest["table_order"].index("guardians") < manifest["table_order"].index("students")
    # erase's check against the backup computes the same hashes again (dereg.erase.sources)
    engine = sa.create_engine(pg_url)
    again = table_digests(engine, [(None, name) for name in record.tables])
    engine.dispose()
    assert {n: list(v) for (_s, n), v in again.items()} == {
        n: [t["rows"], t["sha256"]] for n, t in record.tables.items()
    }

    lines.clear()
    report = restore_and_verify(
        record.backup_id,
        location=location,
        keyring=keyring,
        store=store,
        scratch_url=pg_url,
        progress=lines.append,
    )
    assert report.ok, report.problems
    assert report.tables["awkward"]["restored_rows"] == 5 and report.tables["no_key"]["ok"]
    assert not any("SQLite" in line for line in lines)  # it really used the scratch schema
    assert _scratch_schemas(pg_url) == []

    # without a PostgreSQL scratch server: scratch SQLite, same hashes
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems
    assert report.tables["awkward"]["restored_sha256"] == manifest["tables"]["awkward"]["sha256"]

    # a scratch server that cannot be reached: said so, and scratch SQLite instead
    lines.clear()
    dead = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing"
    report = restore_and_verify(
        record.backup_id,
        location=location,
        keyring=keyring,
        store=store,
        scratch_url=dead,
        progress=lines.append,
    )
    assert report.ok and any("scratch SQLite instead" in line for line in lines)
    assert not any(v in "\n".join(lines) for v in awkward_pg)


def test_tables_read_by_psql_hash_as_the_drivers_copy(pg_url, awkward_pg, take_backup, monkeypatch):
    """Large tables are copied out by psql (here every table: PSQL_COPY_BYTES 0), in the backup's
    snapshot and under its settings: the bytes, so the hashes, are the driver's COPY's."""
    import shutil

    from dereg.backup import pgcopy

    if shutil.which("psql") is None:
        pytest.skip("no psql on PATH")
    monkeypatch.setattr(pgcopy, "PSQL_COPY_BYTES", 0)
    used: list[str] = []
    real = pgcopy.PsqlCopy.copy_out
    monkeypatch.setattr(
        pgcopy.PsqlCopy, "copy_out", lambda self, table, *a: (used.append(table), real(self, table, *a))[1]
    )
    record = take_backup(pg_url, object_lock=True)
    assert {"awkward", "no_key", "empty_one"} <= set(used)
    engine = sa.create_engine(pg_url)
    again = table_digests(engine, [(None, name) for name in record.tables])  # through psycopg2
    engine.dispose()
    assert {n: list(v) for (_s, n), v in again.items()} == {
        n: [t["rows"], t["sha256"]] for n, t in record.tables.items()
    }


def test_a_restored_difference_is_a_mismatch(pg_url, awkward_pg, take_backup, location, keyring, store):
    record = take_backup(pg_url)
    # read back under another time zone, the timestamptz values are written differently: the check
    # compares what the database holds, not what was downloaded
    from dereg.backup import pgcopy

    real = dict(pgcopy.SETTINGS)
    try:
        pgcopy.SETTINGS["TimeZone"] = "Asia/Shanghai"
        report = restore_and_verify(
            record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
        )
    finally:
        pgcopy.SETTINGS.clear()
        pgcopy.SETTINGS.update(real)
    assert not report.ok
    assert "awkward: content hash of the restored rows differs from the manifest" in report.problems
    assert report.tables["guardians"]["ok"]


def test_a_flipped_byte_is_named_and_the_scratch_schema_is_dropped_also_on_a_crash(
    pg_url, awkward_pg, take_backup, location, keyring, store, s3_client, bucket_name, monkeypatch
):
    from dereg.backup import pgcopy

    monkeypatch.setattr(pgcopy, "PACK_BELOW", 0)  # `awkward` in a chunk of its own (packs: below)
    record = take_backup(pg_url)
    key = location.key(record.backup_id, "data", "awkward", "000000.chunk")
    blob = bytearray(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    blob[len(blob) // 2] ^= 0x04
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=bytes(blob))
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert not report.ok and not report.tables["awkward"]["ok"]
    assert [p for p in report.problems if p.startswith(f"awkward: chunk 0 ({key}) fails authentication")]
    assert report.tables["students"]["ok"] and report.tables["no_key"]["ok"]
    assert _scratch_schemas(pg_url) == []

    real_get = restore._get

    def flaky_get(client, loc, k):
        if "/no_key/" in k:
            raise EndpointConnectionError(endpoint_url=loc.endpoint_url)
        return real_get(client, loc, k)

    monkeypatch.setattr(restore, "_get", flaky_get)
    with pytest.raises(EndpointConnectionError):
        restore_and_verify(
            record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
        )
    assert _scratch_schemas(pg_url) == []


def test_small_tables_go_into_packs_and_a_flipped_byte_names_the_tables_it_spoils(
    pg_url, awkward_pg, take_backup, location, keyring, store, s3_client, bucket_name, monkeypatch
):
    """Tables under `PACK_BELOW` share their connection's pack (format 7): a few objects instead of
    one each; each keeps its own rows and hash, an empty one has no chunk, the pack's chunks are
    locked, and a restore reads every table back exactly. A larger table keeps chunks of its own."""
    from dereg.backup import pgcopy, writer

    monkeypatch.setattr(writer, "CHUNK_BYTES", 8192)  # the packs span several chunks
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT pg_total_relation_size('no_key')").scalar_one()
    monkeypatch.setattr(pgcopy, "PACK_BELOW", size)  # no_key and larger: chunks of their own
    record = take_backup(pg_url, object_lock=True)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    tables = manifest["tables"]
    packed = {name for name, t in tables.items() if t.get("pack")}
    assert {"awkward", "empty_one", "students", "guardians"} <= packed and "no_key" not in packed
    assert tables["no_key"]["chunks"][0] == location.key(record.backup_id, "data", "no_key", "000000.chunk")
    assert tables["empty_one"]["chunks"] == [] and tables["empty_one"]["bytes"] == 0
    assert 1 <= len({tables[name]["pack"]["name"] for name in packed}) <= 2  # one per connection
    pack_chunks = {c for name in packed for c in tables[name]["chunks"]}
    assert all("/packs/" in c for c in pack_chunks)
    stored = {
        o["Key"]
        for o in s3_client.list_objects_v2(
            Bucket=bucket_name, Prefix=location.key(record.backup_id, "packs")
        )["Contents"]
    }
    assert stored == pack_chunks  # nothing stored that no table names
    retention = s3_client.get_object_retention(Bucket=bucket_name, Key=sorted(stored)[0])["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    # each packed table's own rows and hash, as erase's check computes them from the source again
    again = table_digests(engine, [(None, name) for name in record.tables])
    engine.dispose()
    assert {n: list(v) for (_s, n), v in again.items()} == {
        n: [t["rows"], t["sha256"]] for n, t in record.tables.items()
    }
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert report.ok, report.problems
    assert report.tables["awkward"]["restored_rows"] == 5 and report.tables["students"]["ok"]

    # a flipped byte in the pack chunk that holds `awkward`: named with its pack, and the tables
    # that do not use that chunk still restore
    key = tables["awkward"]["chunks"][0]
    blob = bytearray(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    blob[len(blob) // 2] ^= 0x04
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=bytes(blob))
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert not report.ok and not report.tables["awkward"]["ok"]
    assert [p for p in report.problems if p.startswith("awkward: chunk") and "fails authentication" in p]
    assert report.tables["no_key"]["ok"]
    spoiled = {name for name in packed if key in tables[name]["chunks"]}
    assert all(report.tables[name]["ok"] for name in packed - spoiled if name in report.tables)
    assert _scratch_schemas(pg_url) == []


def test_a_wrong_keyring_is_refused_clearly(
    pg_url, awkward_pg, take_backup, location, keyring, store, tmp_path
):
    record = take_backup(pg_url)
    other = Keyring.create(tmp_path / "other.json")
    with pytest.raises(KeyringError, match="is not in keyring"):
        restore_and_verify(
            record.backup_id, location=location, keyring=other, store=store, scratch_url=pg_url
        )
    other.keks[keyring.active_kek] = b"\x00" * 32  # same id, different key
    with pytest.raises(KeyringError, match="does not unwrap"):
        restore_and_verify(
            record.backup_id, location=location, keyring=other, store=store, scratch_url=pg_url
        )
    assert _scratch_schemas(pg_url) == []


def _write_version_1_backup(location, keyring, store, rows: list[list], s3_client) -> str:
    """A version 1 backup exactly as docs/backup-format.md (version 1) lays it out."""
    backup_id = "bk-20250101T000000Z-0000v1v1"
    data_key = new_data_key()
    kek_id, wrapped = keyring.wrap_data_key(data_key)
    kinds = ["int", "str", "bytes"]
    plaintext = b"".join(encode_row(r, kinds) for r in rows)
    chunk = location.key(backup_id, "data", "pupils", "000000.chunk")
    s3_client.create_bucket(Bucket=location.bucket)
    s3_client.put_object(
        Bucket=location.bucket,
        Key=chunk,
        Body=seal(data_key, plaintext, associated_data(backup_id, "pupils", 0, True, 1)),
    )
    escrow = location.key("_escrow", f"{backup_id}.json")
    wrapped_b64 = base64.b64encode(wrapped).decode()
    s3_client.put_object(
        Bucket=location.bucket,
        Key=escrow,
        Body=json.dumps({"backup_id": backup_id, "kek_id": kek_id, "wrapped_key": wrapped_b64}).encode(),
    )
    manifest = {
        "format": "dereg-backup",
        "version": 1,
        "backup_id": backup_id,
        "dialect": "sqlite",
        "table_order": ["pupils"],
        "tables": {
            "pupils": {
                "rows": len(rows),
                "sha256": hashlib.sha256(plaintext).hexdigest(),
                "chunks": [chunk],
                "columns": [
                    {"name": n, "kind": k, "type": "", "nullable": True, "primary_key": n == "id"}
                    for n, k in zip(["id", "name", "photo"], kinds, strict=True)
                ],
                "primary_key": ["id"],
                "foreign_keys": [],
            }
        },
        "kek_id": kek_id,
        "escrow_key": escrow,
    }
    s3_client.put_object(
        Bucket=location.bucket,
        Key=location.key(backup_id, "manifest.json"),
        Body=json.dumps(manifest).encode(),
    )
    return backup_id


def test_a_version_1_backup_still_restores(location, keyring, store, s3_client):
    rows = [[1, "李小龙\u2028", b"\x00\xff"], [2, None, None], [3, "", b""]]
    backup_id = _write_version_1_backup(location, keyring, store, rows, s3_client)
    report = restore_and_verify(backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems
    assert report.tables["pupils"]["restored_rows"] == 3
    assert any("version 1 backup: its manifest is not authenticated" in w for w in report.warnings)
    # its chunks are bound to version 1: read as version 2 they would not open
    manifest_key = location.key(backup_id, "manifest.json")
    manifest = json.loads(s3_client.get_object(Bucket=location.bucket, Key=manifest_key)["Body"].read())
    manifest["version"] = 2
    s3_client.put_object(Bucket=location.bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    report = restore_and_verify(backup_id, location=location, keyring=keyring, store=store)
    assert not report.ok and "fails authentication" in report.problems[0]
    assert catalog.get(store, backup_id) is None  # from the off-site store alone


def test_reading_starts_before_the_store_is_checked_but_a_refused_bucket_gets_nothing(
    pg_url, awkward_pg, take_backup, store, s3_client, bucket_name
):
    from dereg.errors import BackupError

    s3_client.create_bucket(Bucket=bucket_name)  # no Object Lock
    with pytest.raises(BackupError, match="has no Object Lock"):
        take_backup(pg_url, object_lock=True)
    assert s3_client.list_objects_v2(Bucket=bucket_name).get("KeyCount", 0) == 0
    assert catalog.list_backups(store, status=None) == []


def test_the_scratch_server_comes_from_the_environment_first(monkeypatch, pg_url):
    from dereg.connections import scratch_url

    monkeypatch.setenv("DEREG_SCRATCH_PG_URL", pg_url)
    assert scratch_url("any_source_conn") == pg_url and scratch_url(None) == pg_url
    monkeypatch.delenv("DEREG_SCRATCH_PG_URL")
    assert scratch_url(None) is None  # no source connection known: scratch SQLite


def test_packs_that_only_empty_tables_went_into_store_nothing(
    pg_url, take_backup, location, keyring, store, s3_client, bucket_name
):
    """Every connection's pack holds only empty tables: no pack chunk is stored (none would be named
    by a table), and the restore still gives back the empty tables."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        for name in ("first_empty", "second_empty", "third_empty"):
            conn.exec_driver_sql(f"CREATE TABLE {name} (id integer PRIMARY KEY, note text)")
    engine.dispose()
    record = take_backup(pg_url, object_lock=True)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    tables = manifest["tables"]
    assert set(tables) == {"first_empty", "second_empty", "third_empty"}
    assert all(t["pack"]["count"] == 0 and t["chunks"] == [] and t["rows"] == 0 for t in tables.values())
    listed = s3_client.list_objects_v2(Bucket=bucket_name, Prefix=location.key(record.backup_id, "packs"))
    assert listed.get("KeyCount", 0) == 0
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert report.ok, report.problems
    assert {name: t["restored_rows"] for name, t in report.tables.items()} == dict.fromkeys(tables, 0)
