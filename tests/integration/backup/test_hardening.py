"""Issue 18, backup side: what a writer of the bucket (or a careless operator) must not be able to do,
against real PostgreSQL, SQLite and SeaweedFS. Each test failed on the code before its fix."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
import sqlalchemy as sa

from dereg.backup import catalog, codec
from dereg.backup.restore import restore_and_verify
from dereg.errors import BackupError

pytestmark = pytest.mark.integration

INJECTED = "text); COMMIT; CREATE TABLE public.dereg_pwned AS SELECT current_user; SELECT (1"


def _manifest(s3_client, bucket: str, key: str) -> dict:
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def _put_manifest(s3_client, bucket: str, key: str, manifest: dict) -> None:
    """A new version of manifest.json, as anyone with write access to the bucket can add."""
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest, indent=1).encode())


def _data_key(keyring, store, backup_id: str) -> bytes:
    import base64

    kek_id, wrapped = catalog.wrapped_key(store, backup_id)
    return keyring.unwrap_data_key(kek_id, base64.b64decode(wrapped))


def _resign(manifest: dict, data_key: bytes) -> dict:
    """Give an altered manifest a valid MAC (an attacker cannot; this isolates the check behind it)."""
    if hasattr(codec, "manifest_mac"):
        manifest["manifest_mac"] = codec.manifest_mac(data_key, manifest)
    return manifest


def _tables(url: str, schema: str = "public") -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


# --- item 1: nothing from the manifest reaches SQL unchecked ------------------------------------
def test_a_pg_type_from_the_manifest_never_runs_as_sql(
    pg_url, make_source, take_backup, location, keyring, store, s3_client, bucket_name
):
    make_source(pg_url)
    record = take_backup(pg_url)
    manifest = _manifest(s3_client, bucket_name, record.manifest_key)
    column = manifest["tables"]["guardians"]["columns"][1]
    assert column["pg_builtin"] is True
    column["pg_type"] = INJECTED
    _put_manifest(
        s3_client,
        bucket_name,
        record.manifest_key,
        _resign(manifest, _data_key(keyring, store, record.backup_id)),
    )
    with pytest.raises(BackupError, match="pg_type is not a PostgreSQL type name") as refused:
        restore_and_verify(
            record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
        )
    assert "guardians" in str(refused.value)
    assert "dereg_pwned" not in _tables(pg_url)


def test_every_type_format_type_writes_is_accepted():
    from dereg.backup.pgcopy import PG_TYPE

    for typ in [
        "integer",
        "numeric(40,12)",
        "character varying(40)",
        "timestamp(3) without time zone",
        "time with time zone",
        "interval day to second(3)",
        "interval(2)",
        "double precision",
        "text[]",
        "integer[][]",
        "bit varying(5)[]",
        '"char"',
        'public."My Enum"[]',
    ]:
        assert PG_TYPE.fullmatch(typ), typ
    for typ in [INJECTED, "integer primary key", 'text collate "C"', "text -- x", "numeric(1,2,3)", ""]:
        assert not PG_TYPE.fullmatch(typ), typ


# --- item 4: the manifest is authenticated ------------------------------------------------------
def test_a_manifest_with_a_table_removed_is_refused_with_or_without_the_catalog(
    sqlite_url, planted, take_backup, location, keyring, store, s3_client, bucket_name, tmp_path
):
    from dereg.evidence.store import open_store

    record = take_backup(sqlite_url)
    manifest = _manifest(s3_client, bucket_name, record.manifest_key)
    del manifest["tables"]["payments"]
    manifest["table_order"].remove("payments")
    manifest["total_rows"] -= 201
    _put_manifest(s3_client, bucket_name, record.manifest_key, manifest)

    with pytest.raises(BackupError, match=f"manifest .* of backup {record.backup_id} fails authentication"):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    elsewhere = open_store(f"sqlite:///{tmp_path / 'other-store.db'}")  # from the off-site store alone
    try:
        with pytest.raises(BackupError, match="fails authentication"):
            restore_and_verify(record.backup_id, location=location, keyring=keyring, store=elsewhere)
    finally:
        elsewhere.dispose()

    # even re-signed (as if by the key's holder), the catalog still says what was backed up
    _put_manifest(
        s3_client,
        bucket_name,
        record.manifest_key,
        _resign(manifest, _data_key(keyring, store, record.backup_id)),
    )
    with pytest.raises(BackupError, match="differs from the catalog"):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)


def _as_version_2(s3_client, location, keyring, store, backup_id: str) -> dict:
    """Rewrite a (small, one chunk per table) current backup exactly as version 2 laid it out."""
    data_key = _data_key(keyring, store, backup_id)
    key = location.key(backup_id, "manifest.json")
    manifest = _manifest(s3_client, location.bucket, key)
    for name, spec in manifest["tables"].items():
        [chunk] = spec["chunks"]
        blob = s3_client.get_object(Bucket=location.bucket, Key=chunk)["Body"].read()
        plain = codec.open_sealed(
            data_key, blob, codec.associated_data(backup_id, name, 0, True, codec.FORMAT_VERSION)
        )
        old_key = location.key(backup_id, "data", name, "000000.chunk")
        sealed = codec.seal(data_key, plain, codec.associated_data(backup_id, name, 0, True, 2))
        s3_client.put_object(Bucket=location.bucket, Key=old_key, Body=sealed)
        spec["chunks"] = [old_key]
    manifest["version"] = 2
    manifest.pop("manifest_mac")
    manifest.pop("schema", None)
    _put_manifest(s3_client, location.bucket, key, manifest)
    return manifest


def test_a_version_2_backup_restores_with_a_warning_and_the_catalog_still_guards_it(
    sqlite_url, planted, take_backup, location, keyring, store, s3_client, bucket_name, tmp_path
):
    record = take_backup(sqlite_url)
    manifest = _as_version_2(s3_client, location, keyring, store, record.backup_id)
    lines: list[str] = []
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, progress=lines.append
    )
    assert report.ok, report.problems
    assert any("manifest is not authenticated" in w for w in report.warnings)
    assert any(line.startswith("WARNING") and record.backup_id in line for line in lines)
    # into a kept database: data only, and it says so
    target = f"sqlite:///{tmp_path / 'target.db'}"
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, into_url=target
    )
    assert report.ok, report.problems
    assert any("version 2 backup, which holds no schema: restored data-only" in w for w in report.warnings)

    del manifest["tables"]["payments"]
    manifest["table_order"].remove("payments")
    _put_manifest(s3_client, bucket_name, record.manifest_key, manifest)
    with pytest.raises(BackupError, match="differs from the catalog"):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)


def test_an_edited_retention_is_refused_by_rebuild_and_shred_reads_the_locks(
    sqlite_url, planted, take_backup, location, keyring, store, s3_client, bucket_name, tmp_path
):
    from dereg.evidence.store import open_store

    record = take_backup(sqlite_url, object_lock=True)
    manifest = _manifest(s3_client, bucket_name, record.manifest_key)
    manifest["retain_until"] = "2020-01-01T00:00:00+00:00"
    _put_manifest(s3_client, bucket_name, record.manifest_key, manifest)
    escrow = location.key("_escrow", f"{record.backup_id}.json")

    lost = open_store(f"sqlite:///{tmp_path / 'lost.db'}")
    try:
        counts = catalog.rebuild(lost, location, keyring=keyring)
        assert counts["refused"] == 1 and counts["added"] == 0
        assert catalog.get(lost, record.backup_id) is None

        # without the keyring (or for an older, unauthenticated backup) it is catalogued as it says...
        catalog.rebuild(lost, location)
        assert catalog.get(lost, record.backup_id)["retain_until"].startswith("2020")
        # ...but shred reads the locks from the store, and they say otherwise
        with pytest.raises(BackupError, match="locked in .* until .*Nothing was destroyed"):
            catalog.crypto_shred(lost, location, record.backup_id)
        assert s3_client.list_object_versions(Bucket=bucket_name, Prefix=escrow).get("Versions")
        assert catalog.get(lost, record.backup_id)["status"] == "complete"
    finally:
        lost.dispose()


# --- item 5: shred destroys the escrow where the catalog says it is -----------------------------
def test_shred_with_a_wrong_from_still_destroys_the_escrow_copy(
    sqlite_url, planted, take_backup, location, keyring, store, s3_client, bucket_name, monkeypatch
):
    record = take_backup(sqlite_url, object_lock=True)
    escrow = location.key("_escrow", f"{record.backup_id}.json")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    wrong = dataclasses.replace(location, prefix="somewhere/else")

    # the escrow versions cannot be deleted (here: deletes silently do nothing): never marked shredded
    real_client = type(location).client

    def client_ignoring_deletes(self):
        client = real_client(self)
        client.delete_object = lambda **kwargs: {}
        return client

    monkeypatch.setattr(type(location), "client", client_ignoring_deletes)
    with pytest.raises(BackupError, match="NOT marked shredded"):
        catalog.crypto_shred(store, wrong, record.backup_id, now=later)
    assert catalog.get(store, record.backup_id)["status"] == "complete"
    monkeypatch.setattr(type(location), "client", real_client)

    result = catalog.crypto_shred(store, wrong, record.backup_id, now=later)
    assert result["escrow_versions_deleted"] == 1
    versions = s3_client.list_object_versions(Bucket=bucket_name, Prefix=escrow)
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    assert catalog.get(store, record.backup_id)["status"] == "shredded"


# --- item 9 / issue 17: every user schema is backed up --------------------------------------------
def test_a_postgresql_backup_covers_every_user_schema(
    pg_url, make_source, take_backup, location, keyring, store
):
    make_source(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA archive")
        conn.exec_driver_sql("CREATE TABLE archive.orders (id int PRIMARY KEY, buyer text)")
        conn.exec_driver_sql("INSERT INTO archive.orders VALUES (1, '王秀英')")
        conn.exec_driver_sql("CREATE TABLE archive.guardians (id int PRIMARY KEY)")  # same name, other schema
    engine.dispose()
    # restricted to some tables, a personal table left out still refuses the backup
    with pytest.raises(BackupError, match="archive.orders") as refused:
        take_backup(pg_url, personal_tables=["archive.orders", "guardians"], tables=["guardians", "students"])
    assert "王秀英" not in str(refused.value)
    assert catalog.list_backups(store, status=None) == []

    record = take_backup(pg_url, personal_tables=["archive.orders", "guardians", "public.students"])
    assert record.tables["archive.orders"]["rows"] == 1
    assert record.tables["archive.guardians"]["rows"] == 0 and record.tables["guardians"]["rows"] == 2
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert report.ok, report.problems
    assert report.tables["archive.orders"]["restored_rows"] == 1


# --- item 12: object keys cannot collide or escape ----------------------------------------------
def test_table_names_that_look_like_paths_get_their_own_keys(
    sqlite_url, take_backup, location, keyring, store, s3_client, bucket_name
):
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        for name in ("t", "t/", "a/../../_escrow", "%2F"):
            conn.exec_driver_sql(f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY, v TEXT)')
            conn.exec_driver_sql(f"INSERT INTO \"{name}\" VALUES (1, '{name}'), (2, 'x')")
    engine.dispose()
    record = take_backup(sqlite_url)
    manifest = _manifest(s3_client, bucket_name, record.manifest_key)
    keys = [k for t in manifest["tables"].values() for k in t["chunks"]]
    assert len(set(keys)) == len(keys) == 4
    data = location.key(record.backup_id, "data") + "/"
    assert all(k.startswith(data) and "/../" not in k and k.count("/") == data.count("/") + 1 for k in keys)
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems


# --- item 13: a huge value is spread over chunks ---------------------------------------------------
BIG = 24 * 1024 * 1024


@pytest.mark.parametrize("server", ["pg_url", "sqlite_url"])
def test_a_large_cell_is_split_across_chunks_and_restores(
    server, request, take_backup, location, keyring, store, s3_client, bucket_name, monkeypatch
):
    from dereg.backup import pgcopy

    # on PostgreSQL the table is small on disk (TOAST compresses it) and would go into a pack: here
    # it has chunks of its own (a packed table's bytes are cut the same way, in its pack's chunks)
    monkeypatch.setattr(pgcopy, "PACK_BELOW", 0)
    url = request.getfixturevalue(server)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute(
            sa.text("INSERT INTO big VALUES (1, :a), (2, :b), (3, 'small')"),
            {"a": ("学\t\n\\x" * (BIG // 8))[: BIG // 2], "b": "y" * BIG},
        )
    engine.dispose()
    record = take_backup(url)
    manifest = _manifest(s3_client, bucket_name, record.manifest_key)
    spec = manifest["tables"]["big"]
    assert spec["bytes"] > BIG and len(spec["chunks"]) >= spec["bytes"] // codec.CHUNK_BYTES
    # every chunk but the last is exactly chunk_plaintext_bytes: none grew to hold a whole line
    data_key = _data_key(keyring, store, record.backup_id)
    for index, key in enumerate(spec["chunks"][:-1]):
        blob = s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read()
        aad = codec.associated_data(record.backup_id, "big", index, False, manifest["version"])
        assert len(codec.open_sealed(data_key, blob, aad)) == manifest["chunk_plaintext_bytes"]
    report = restore_and_verify(
        record.backup_id,
        location=location,
        keyring=keyring,
        store=store,
        scratch_url=url if server == "pg_url" else None,
    )
    assert report.ok, report.problems
    if server == "pg_url":  # the scratch SQLite fallback reads the same stream
        report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
        assert report.ok, report.problems


# --- item 14: restore --into a database that has the table ---------------------------------------
def test_restore_into_a_database_that_already_has_a_table_is_refused_before_anything(
    sqlite_url, planted, take_backup, location, keyring, store, tmp_path
):
    record = take_backup(sqlite_url)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    engine = sa.create_engine(target)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE students (id INTEGER PRIMARY KEY)")
    engine.dispose()
    with pytest.raises(BackupError, match="already has table.*'students'.*Nothing was restored"):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store, into_url=target)
    assert _tables(target, schema=None) == {"students"}
