"""Per-subject keys of format version 6 (a GGM tree, one key per subject; still written with
`subject_scheme="ggm"`, and what older backups hold) on PostgreSQL + SeaweedFS: back up the small
source with its subject rows sealed, shred one subject, restore, and check by independent SQL that
only that subject's personal columns became unreadable; the bad inputs of `shred-subject`. Version 7
(subject group blocks): test_group_keys.py."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from dereg.backup import catalog
from dereg.backup.restore import restore_and_verify
from dereg.backup.subjectkeys import SealedTable, SealSpec, escrow_key
from dereg.errors import BackupError
from dereg.evidence import certificate_doc
from dereg.evidence.certificate import load_certificate, verify_certificate
from dereg.evidence.ledger import Ledger
from dereg.subjectshred import shred_subject
from tests.integration.backup.conftest import make_small_source

SHREDDED = 10  # the student whose key is destroyed (李小龙, guardian 1)


def _no_pdf(document: str) -> bytes:
    raise certificate_doc.PdfUnavailable("not rendered in this test")


def _spec() -> SealSpec:
    """What an erasure plan of the small source gives (students the subjects; payments linked to
    them; guardians referred to by them)."""
    to_students = {"table": "students", "schema": None, "name": "students"}
    return SealSpec(
        subject_table="students",
        subject_schema=None,
        subject_name="students",
        subject_key="id",
        tables={
            "students": SealedTable(["name", "born", "photo"], []),
            "payments": SealedTable(
                ["amount", "memo"], [{**to_students, "columns": ["student_id"], "ref_columns": ["id"]}]
            ),
            "guardians": SealedTable(
                ["name", "id_number", "mobile", "email", "note"],
                [
                    {
                        **to_students,
                        "columns": ["id"],
                        "ref_columns": ["guardian_id"],
                        "direction": "referenced",
                    }
                ],
            ),
        },
    )


def _rows(url: str, table: str) -> dict:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                r[0]: tuple(r)
                for r in conn.exec_driver_sql(f'SELECT * FROM "{table}" ORDER BY id')  # noqa: S608 - fixed names
            }
    finally:
        engine.dispose()


def assert_only_the_subject_unreadable(pg_url: str, restored_db: str, manifest: dict) -> None:
    """Independent SQL: student SHREDDED's personal columns (and those of their guardian and payments)
    unreadable in the restored copy, every other row and column equal to the source; a NOT NULL
    personal column holds the marker, not NULL."""
    sealed = {t: s.columns for t, s in _spec().tables.items()}
    gone = {
        "students": {SHREDDED},
        "guardians": {1},
        "payments": {i for i in range(1, 201) if 10 + i % 2 == SHREDDED},
    }
    for table in ("guardians", "students", "payments"):
        source, back = _rows(pg_url, table), _rows(restored_db, table)
        assert source.keys() == back.keys()
        names = [c["name"] for c in manifest["tables"][table]["columns"]]
        for key, row in source.items():
            if key not in gone[table]:
                assert back[key] == row, f"{table} row {key} differs"
                continue
            for name, was, now in zip(names, row, back[key], strict=True):
                if name in sealed[table]:
                    assert now != was and (now is None or now in ("#shredded", "#shredde")), (table, name)
                else:
                    assert now == was, (table, name)
    assert _rows(restored_db, "guardians")[1][1].startswith("#shred")


def test_one_subject_shredded_inside_a_locked_backup(
    pg_url, restored_db, take_backup, location, keyring, store, s3_client, monkeypatch, tmp_path
):
    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    # the certificate's PDF copy is WeasyPrint's (tested with the closure certificate): ~3 s each here
    monkeypatch.setattr(certificate_doc, "render_pdf", _no_pdf)
    planted = make_small_source(pg_url)
    record = take_backup(
        pg_url,
        company_id="school-sk",
        subjects=_spec(),
        subject_scheme="ggm",
        object_lock=True,
        retention_days=30,
    )
    manifest = json.loads(
        s3_client.get_object(Bucket=location.bucket, Key=record.manifest_key)["Body"].read()
    )
    assert manifest["version"] == 6 and manifest["subject_keys"]["enabled"] is True
    assert manifest["subject_keys"]["subjects"] == 2
    assert manifest["tables"]["guardians"]["sealed"]["markers"] == {"name": "#shredded"}
    assert manifest["tables"]["payments"]["sealed"]["rows"] == 200  # payment 999 has no student
    # the plain hash is what a plain backup records; the stored stream has its own
    assert manifest["tables"]["students"]["sha256"] != manifest["tables"]["students"]["sealed_sha256"]
    escrow = escrow_key(location, record.backup_id)
    assert s3_client.get_object(Bucket=location.bucket, Key=escrow)  # the key set is escrowed, unlocked
    # nothing personal in clear in the bucket (chunks are sealed twice over)
    blob = b"".join(
        s3_client.get_object(Bucket=location.bucket, Key=o["Key"])["Body"].read()
        for o in s3_client.list_objects_v2(Bucket=location.bucket)["Contents"]
    )
    assert not any(v.encode() in blob for v in planted)

    # a reader written from the spec opens the sealed rows to exactly what a plain backup holds
    kek_id, wrapped = catalog.wrapped_key(store, record.backup_id)
    data_key = keyring.unwrap_data_key(kek_id, base64.b64decode(wrapped), what="the test's backup")
    for table in ("students", "guardians", "payments"):
        plain = _read_sealed_table_from_the_spec(s3_client, location.bucket, manifest, data_key, table)
        assert hashlib.sha256(plain).hexdigest() == manifest["tables"][table]["sha256"], table

    # before any shred: a plain restore gives back exactly the source
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert report.ok, report.problems
    assert not report.warnings or all("shredded" not in w for w in report.warnings)

    # bad input: a ref that matches nothing changes and records nothing
    entries = len(Ledger(store).entries())
    with pytest.raises(BackupError, match="matches no subject"):
        shred_subject(
            store, location, keyring, company_id="school-sk", subject_ref="4242", signing_keyring=keyring
        )
    assert len(Ledger(store).entries()) == entries

    result = shred_subject(
        store, location, keyring, company_id="school-sk", subject_ref=str(SHREDDED), signing_keyring=keyring
    )
    assert [b["backup_id"] for b in result["backups"]] == [record.backup_id]
    cert = load_certificate(Path(result["certificate"]))
    assert verify_certificate(cert, store=store).ok
    assert cert["body"]["subject_ref"] == str(SHREDDED)
    # every older escrow version is gone; a retry (as after an interruption) finishes and changes nothing
    versions = s3_client.list_object_versions(Bucket=location.bucket, Prefix=escrow).get("Versions", [])
    assert len(versions) == 1
    again = shred_subject(
        store, location, keyring, company_id="school-sk", subject_ref=str(SHREDDED), signing_keyring=keyring
    )
    assert again["backups"][0]["key_was_already_gone"] is True

    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, into_url=restored_db
    )
    assert report.ok, report.problems
    assert report.schema_rebuilt
    assert report.tables["students"]["shredded_rows"] == 1
    assert report.tables["payments"]["shredded_rows"] == 100
    assert report.tables["guardians"]["shredded_rows"] == 1

    assert_only_the_subject_unreadable(pg_url, restored_db, manifest)


def test_a_version_6_backup_that_did_not_record_its_table_numbers_still_restores(
    pg_url, take_backup, location, keyring, store, s3_client, monkeypatch
):
    # before 2026-12-04 a sealed row's nonce held its table's place in the order the tables were
    # read, not recorded: without the foreign key, table_order (which follows the keys) differs
    from dereg.backup import subjectkeys

    make_small_source(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE payments DROP CONSTRAINT payments_student_id_fkey")
        # the table's first chunk holds rows of no subject only: the number is checked further on
        conn.exec_driver_sql("ALTER TABLE payments RENAME TO kept")
        conn.exec_driver_sql("CREATE TABLE payments (LIKE kept INCLUDING ALL)")
        conn.exec_driver_sql(
            "INSERT INTO payments (id, student_id, amount, memo) "
            "SELECT -i, NULL, i, repeat('x', 100) FROM generate_series(1, 30000) i"
        )
        conn.exec_driver_sql("INSERT INTO payments SELECT * FROM kept")
        conn.exec_driver_sql(
            "DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %%s OWNED BY payments.id', "
            "pg_get_serial_sequence('kept', 'id')); END $$"
        )
        conn.exec_driver_sql("DROP TABLE kept")
    engine.dispose()
    entry, numbers = subjectkeys.Sealer.manifest_entry, {}

    def as_written_before(sealer, stream):
        written = entry(sealer, stream)
        numbers.update(written.pop("table_numbers"))
        return written

    monkeypatch.setattr(subjectkeys.Sealer, "manifest_entry", as_written_before)
    record = take_backup(pg_url, subjects=_spec(), subject_scheme="ggm")
    manifest = json.loads(
        s3_client.get_object(Bucket=location.bucket, Key=record.manifest_key)["Body"].read()
    )
    assert manifest["version"] == 6 and "table_numbers" not in manifest["subject_keys"]
    moved = [n for n, k in numbers.items() if manifest["table_order"].index(n) != k]
    assert "payments" in moved  # a sealed table read at another place than its place in table_order
    assert len(manifest["tables"]["payments"]["chunks"]) >= 2
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert report.ok, report.problems
    assert all(report.tables[n]["restored_rows"] == manifest["tables"][n]["rows"] for n in numbers)


def test_backups_before_subject_keys_are_refused_clearly(pg_url, take_backup, location, keyring, store):
    make_small_source(pg_url)
    take_backup(pg_url, company_id="school-old")  # no plan given: no per-subject keys
    with pytest.raises(BackupError, match="no backup of school-old has per-subject keys") as err:
        shred_subject(
            store, location, keyring, company_id="school-old", subject_ref="10", signing_keyring=keyring
        )
    assert "dereg shred" in str(err.value) and "retention" in str(err.value)
    assert Ledger(store).entries() == []


def test_a_mariadb_backup_given_a_plan_says_it_has_no_subject_keys(
    mariadb_url, take_backup, location, keyring, store, s3_client
):
    """A MariaDB source with an erasure plan (a closure's backup stage) seals nothing: its rows go
    through the server's text path, not COPY. Its manifest says so, and shred-subject refuses it as it
    refuses a backup without per-subject keys (it used to claim keys for 0 subjects and answer that the
    ref matched no subject)."""
    make_small_source(mariadb_url)
    record = take_backup(mariadb_url, company_id="school-maria", subjects=_spec())
    manifest = json.loads(
        s3_client.get_object(Bucket=location.bucket, Key=record.manifest_key)["Body"].read()
    )
    assert manifest["subject_keys"]["enabled"] is False
    assert "COPY path" in manifest["subject_keys"]["reason"]
    with pytest.raises(BackupError, match="no backup of school-maria has per-subject keys"):
        shred_subject(
            store, location, keyring, company_id="school-maria", subject_ref="10", signing_keyring=keyring
        )
    assert Ledger(store).entries() == []


def test_shredding_the_whole_backup_destroys_the_subject_key_set_too(
    pg_url, take_backup, location, keyring, store, s3_client
):
    import datetime as dt

    from dereg.backup.catalog import crypto_shred
    from dereg.backup.subjectkeys import load_key_set_body

    make_small_source(pg_url)
    record = take_backup(pg_url, company_id="school-end", subjects=_spec(), subject_scheme="ggm")
    assert load_key_set_body(store, s3_client, location, "school-end", record.backup_id) is not None
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)  # its retention (1 day) has ended
    crypto_shred(store, location, record.backup_id, now=later)
    assert load_key_set_body(store, s3_client, location, "school-end", record.backup_id) is None
    key = escrow_key(location, record.backup_id)
    assert not s3_client.list_object_versions(Bucket=location.bucket, Prefix=key).get("Versions")
    with pytest.raises(BackupError, match="no complete backup"):
        shred_subject(
            store, location, keyring, company_id="school-end", subject_ref="10", signing_keyring=keyring
        )


def _read_sealed_table_from_the_spec(s3, bucket: str, manifest: dict, data_key: bytes, name: str) -> bytes:
    """A reader written from docs/backup-format.md ("Per-subject keys") alone: the key set from its
    escrow object, the GGM leaves, the subjects stream, and one sealed table opened to its plain rows."""
    import base64
    import hashlib

    import zstandard
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

    bid, version = manifest["backup_id"], manifest["version"]
    prefix = manifest["escrow_key"].rsplit("/_escrow/", 1)[0]
    body = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{prefix}/_escrow/{bid}.subject-keys.json")["Body"].read()
    )
    wrap = HKDF(hashes.SHA256(), 32, None, f"dereg-backup subject-keys|{bid}".encode()).derive(data_key)
    ((level, index, wrapped),) = body["nodes"]  # a fresh backup: the root alone
    assert (level, index) == (0, 0)
    root = aes_key_unwrap(wrap, base64.b64decode(wrapped))

    def leaf(i: int) -> bytes:
        node = root
        for below in range(body["depth"] - 1, -1, -1):
            out = hashlib.blake2b(key=node, digest_size=64, person=b"dereg-ggm").digest()
            node = out[32:] if (i >> below) & 1 else out[:32]
        return node

    def stream(keys: list[str], aad) -> bytes:
        data = b""
        for i, key in enumerate(keys):
            blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            plain = AESGCM(data_key).decrypt(blob[:12], blob[12:], aad(i, 1 if i == len(keys) - 1 else 0))
            data += zstandard.ZstdDecompressor().decompress(plain)
        return data

    subjects = manifest["subject_keys"]["subjects_stream"]
    refs = stream(
        subjects["chunks"], lambda i, last: f"dereg-backup-subjects/{version}|{bid}|{i}|{last}".encode()
    )
    refs = refs.split(b"\n")[:-1]
    spec = manifest["tables"][name]
    stored = stream(
        spec["chunks"], lambda i, last: f"dereg-backup/{version}|{bid}|{name}|{i}|{last}".encode()
    )
    assert hashlib.sha256(stored).hexdigest() == spec["sealed_sha256"]
    names = [c["name"] for c in spec["columns"]]
    positions = [names.index(c) for c in spec["sealed"]["columns"]]
    number = manifest["subject_keys"]["table_numbers"][name]
    lines = []
    for line_no, line in enumerate(stored.split(b"\n")[:-1]):
        *fields, seal = line.split(b"\t")
        if seal != b"\\N":
            n, blob = seal.split(b":")
            nonce = number.to_bytes(4, "big") + line_no.to_bytes(8, "big")
            # version 6: AES-256-CTR from the counter block nonce || 00000002, no tag
            ctr = Cipher(algorithms.AES(leaf(int(n))), modes.CTR(nonce + b"\0\0\0\2")).decryptor()
            secret = ctr.update(base64.b64decode(blob)) + ctr.finalize()
            for p, value in zip(positions, secret.split(b"\t"), strict=True):
                fields[p] = value
        lines.append(b"\t".join(fields) + b"\n")
    return b"".join(lines)


def test_subject_numbers_follow_the_keys_order_not_their_texts(pg_url):
    """`read_refs` orders by the key column itself (its index), not by the key's text: 9 before 10."""
    from dereg.backup.subjectkeys import read_refs

    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS ref_order")
            conn.exec_driver_sql("CREATE TABLE ref_order (id integer PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO ref_order VALUES (100), (9), (10), (2)")
        raw = engine.raw_connection()
        try:
            spec = SealSpec("ref_order", None, "ref_order", "id", {})
            assert read_refs(raw.cursor(), spec) == [b"2", b"9", b"10", b"100"]
        finally:
            raw.close()
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE ref_order")
    finally:
        engine.dispose()
