"""docs/backup-format.md is enough to read a backup: a reader written from that page alone, using no
Dereg code (only boto3, cryptography and zstandard), decrypts a real backup and checks it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from decimal import Decimal

import pytest
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

pytestmark = pytest.mark.integration


def _decode(value, kind: str):
    if value is None or not isinstance(value, dict):
        return value
    if "d" in value:
        return Decimal(value["d"])
    if "date" in value:
        return dt.date.fromisoformat(value["date"])
    if "dt" in value:
        return dt.datetime.fromisoformat(value["dt"])
    if "b64" in value:
        return base64.b64decode(value["b64"])
    return value["s"]


_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _copy_field(field: bytes):
    """One field of a pg-copy-text line, as the spec says: \\N is NULL, seven escapes undone."""
    if field == b"\\N":
        return None
    text, out, i = field.decode("utf-8"), [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_COPY_ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_MYSQL_ESCAPES = {b"0": b"\x00", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}


def _mysql_field(field: bytes) -> bytes | None:
    """One field of a mysql-text line (version 5), as the spec says: \\N is NULL, escapes undone,
    the column's stored bytes."""
    if field == b"\\N":
        return None
    out, i = bytearray(), 0
    while i < len(field):
        if field[i : i + 1] == b"\\" and i + 1 < len(field):
            nxt = field[i + 1 : i + 2]
            out += _MYSQL_ESCAPES.get(nxt, nxt)
            i += 2
        else:
            out += field[i : i + 1]
            i += 1
    return bytes(out)


class ManifestNotAuthentic(Exception):
    pass


def check_manifest_mac(manifest: dict, data_key: bytes) -> None:
    """Version 3: HMAC-SHA256 under HKDF-SHA256(data key, info "dereg-backup manifest-mac|<id>") of
    the manifest without `manifest_mac`, as sorted, whitespace-free UTF-8 JSON."""
    info = f"dereg-backup manifest-mac|{manifest['backup_id']}".encode("ascii")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)
    body = {k: v for k, v in manifest.items() if k != "manifest_mac"}
    message = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, manifest.get("manifest_mac", "")):
        raise ManifestNotAuthentic(manifest["backup_id"])


def read_backup(s3, bucket: str, manifest_key: str, kek: bytes) -> dict[str, list[list]]:
    """A restore tool written from docs/backup-format.md."""
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    version = manifest["version"]
    assert manifest["format"] == "dereg-backup" and version in (1, 2, 3, 4, 5, 6, 7)
    assert not any(t.get("sealed") for t in manifest["tables"].values())  # sealed rows: test_subject_keys
    escrow = json.loads(s3.get_object(Bucket=bucket, Key=manifest["escrow_key"])["Body"].read())
    assert escrow["kek_id"] == manifest["kek_id"]
    data_key = aes_key_unwrap(kek, base64.b64decode(escrow["wrapped_key"]))
    if version >= 3:
        check_manifest_mac(manifest, data_key)
    nonce_bytes = manifest["nonce_bytes"]
    tables = {}
    for name in manifest["table_order"]:
        spec = manifest["tables"][name]
        if spec.get("partitioned"):  # version 4: its rows are in its partitions
            continue
        kinds = [c["kind"] for c in spec["columns"]]
        stream = bytearray()  # version 3: a chunk may end inside a line, so lines are split after joining
        pack = spec.get("pack")  # version 6: the table's bytes are a slice of a pack's chunks
        for number, key in enumerate(spec["chunks"]):
            blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            if pack is None:
                last = 1 if number == len(spec["chunks"]) - 1 else 0
                aad = f"dereg-backup/{version}|{manifest['backup_id']}|{name}|{number}|{last}".encode()
            else:
                index = pack["first"] + number
                last = 1 if index == pack["count"] - 1 else 0
                aad = f"dereg-backup-pack/{version}|{manifest['backup_id']}|{pack['name']}|{index}|{last}".encode()
            compressed = AESGCM(data_key).decrypt(blob[:nonce_bytes], blob[nonce_bytes:], aad)
            stream += zstandard.ZstdDecompressor().decompress(compressed)
        if pack is not None:
            stream = stream[pack["offset"] : pack["offset"] + spec["bytes"]]
        digest, rows = hashlib.sha256(bytes(stream)), []
        assert stream.endswith(b"\n") or not stream, name
        for line in bytes(stream).split(b"\n")[:-1]:
            if spec.get("encoding", "json-rows") == "pg-copy-text":
                rows.append([_copy_field(f) for f in line.split(b"\t")])
            elif spec["encoding"] == "mysql-text":
                rows.append([_mysql_field(f) for f in line.split(b"\t")])
            else:
                rows.append([_decode(v, k) for v, k in zip(json.loads(line), kinds, strict=True)])
        assert len(rows) == spec["rows"], name
        assert digest.hexdigest() == spec["sha256"], name
        tables[name] = rows
    if "schema" in manifest:  # version 4: the schema sections, with their own associated data
        for section, spec in manifest["schema"]["sections"].items():
            text = bytearray()
            for index, key in enumerate(spec["chunks"]):
                blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                last = 1 if index == len(spec["chunks"]) - 1 else 0
                aad = (
                    f"dereg-backup-schema/{version}|{manifest['backup_id']}|{section}|{index}|{last}".encode()
                )
                compressed = AESGCM(data_key).decrypt(blob[:nonce_bytes], blob[nonce_bytes:], aad)
                text += zstandard.ZstdDecompressor().decompress(compressed)
            assert hashlib.sha256(bytes(text)).hexdigest() == spec["sha256"], section
            tables[f"schema {section}"] = bytes(text).decode("utf-8")
    return tables


def test_a_reader_written_from_the_spec_reads_the_backup(
    sqlite_url, planted, take_backup, keyring, s3_client, bucket_name, monkeypatch
):
    from dereg.backup import writer

    monkeypatch.setattr(writer, "CHUNK_BYTES", 4096)  # several chunks per large table
    record = take_backup(sqlite_url)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    assert len(manifest["tables"]["payments"]["chunks"]) > 1
    kek = keyring.keks[manifest["kek_id"]]

    tables = read_backup(s3_client, bucket_name, record.manifest_key, kek)

    guardians = {row[0]: row for row in tables["guardians"]}
    columns = [c["name"] for c in manifest["tables"]["guardians"]["columns"]]
    first = dict(zip(columns, guardians[1], strict=True))
    assert first["name"] == planted[0] and first["id_number"] == planted[1]
    assert first["note"].count("\u2028") == 1  # separators inside values survive
    assert dict(zip(columns, guardians[2], strict=True))["email"] is None
    students = {row[0]: row for row in tables["students"]}
    s_cols = [c["name"] for c in manifest["tables"]["students"]["columns"]]
    kid = dict(zip(s_cols, students[10], strict=True))
    assert kid["born"] == dt.date(2016, 4, 11)
    assert kid["enrolled_at"] == dt.datetime(2024, 9, 1, 8, 30, 15, 123456)
    assert kid["photo"] == bytes(range(256)) * 3 and kid["active"] is True
    assert kid["height_m"] == 1.0 / 3.0
    p_cols = [c["name"] for c in manifest["tables"]["payments"]["columns"]]
    payments = [dict(zip(p_cols, row, strict=True)) for row in tables["payments"]]
    assert [p["id"] for p in payments] == sorted(p["id"] for p in payments)  # primary-key order
    assert payments[0]["amount"] == Decimal("1801.50") and payments[-1]["amount"] is None

    # the associated data really binds the position: the last chunk does not open as a middle one
    chunks = manifest["tables"]["payments"]["chunks"]
    blob = s3_client.get_object(Bucket=bucket_name, Key=chunks[-1])["Body"].read()
    data_key = aes_key_unwrap(
        kek,
        base64.b64decode(
            json.loads(s3_client.get_object(Bucket=bucket_name, Key=manifest["escrow_key"])["Body"].read())[
                "wrapped_key"
            ]
        ),
    )
    wrong = f"dereg-backup/5|{record.backup_id}|payments|{len(chunks) - 1}|0".encode()
    with pytest.raises(InvalidTag):
        AESGCM(data_key).decrypt(blob[:12], blob[12:], wrong)

    # version 4: the schema as sqlite_master's SQL, one JSON statement per line
    pre = [json.loads(line) for line in tables["schema pre-data"].splitlines()]
    assert {s["name"] for s in pre if s["kind"] == "table"} == {"guardians", "students", "payments"}
    assert all(s["sql"].startswith("CREATE TABLE") for s in pre)

    # the manifest's MAC, checked as the spec says: a new version with a table dropped fails it
    assert manifest["version"] == 7
    check_manifest_mac(manifest, data_key)
    del manifest["tables"]["payments"]
    manifest["table_order"].remove("payments")
    with pytest.raises(ManifestNotAuthentic):
        check_manifest_mac(manifest, data_key)


def test_a_reader_written_from_the_spec_reads_a_postgresql_backup(
    pg_url, make_source, take_backup, keyring, s3_client, bucket_name, monkeypatch
):
    import sqlalchemy as sa

    from dereg.backup import writer

    planted = make_source(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE odd (id int PRIMARY KEY, t text, b bytea, at timestamptz, tags text[]);"
            "INSERT INTO odd VALUES (1, E'a\\tb\\nc\\\\d', '\\x00ff', '2026-01-02 03:04:05+08', '{x,\"y z\"}'),"
            "(2, '', NULL, NULL, NULL), (3, NULL, '\\x', NULL, '{}')"
        )
    engine.dispose()
    monkeypatch.setattr(writer, "CHUNK_BYTES", 4096)
    record = take_backup(pg_url)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    assert manifest["version"] == 7 and manifest["tables"]["odd"]["encoding"] == "pg-copy-text"
    assert len(manifest["tables"]["payments"]["chunks"]) > 1
    tables = read_backup(s3_client, bucket_name, record.manifest_key, keyring.keks[manifest["kek_id"]])
    odd = {row[0]: row for row in tables["odd"]}
    assert odd["1"] == ["1", "a\tb\nc\\d", "\\x00ff", "2026-01-01 19:04:05+00", '{x,"y z"}']
    assert odd["2"][1] == "" and odd["2"][2] is None and odd["3"][1] is None and odd["3"][2] == "\\x"
    guardians = {row[0]: row for row in tables["guardians"]}
    assert guardians["1"][1] == planted[0] and guardians["1"][2] == planted[1]
    assert sorted(int(p[0]) for p in tables["payments"]) == [*range(1, 201), 999]
    # version 4: pg_dump's schema, tables before the rows, keys after
    assert manifest["schema"]["encoding"] == "pg-dump-sql"
    assert (
        "CREATE TABLE public.odd" in tables["schema pre-data"]
        and "\\restrict" not in tables["schema pre-data"]
    )
    assert "ADD CONSTRAINT odd_pkey PRIMARY KEY" in tables["schema post-data"]
    assert "PRIMARY KEY" not in tables["schema pre-data"]


def test_a_reader_written_from_the_spec_reads_a_value_spread_over_chunks_and_an_encoded_key(
    sqlite_url, take_backup, keyring, s3_client, bucket_name, monkeypatch
):
    """Version 3: chunks cut inside a line, and the object key made from the encoded table name."""
    import sqlalchemy as sa

    from dereg.backup import writer

    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE "notes/2026" (id INTEGER PRIMARY KEY, body TEXT)')
        conn.execute(sa.text('INSERT INTO "notes/2026" VALUES (1, :b), (2, NULL)'), {"b": "学\n" * 5000})
    engine.dispose()
    monkeypatch.setattr(writer, "CHUNK_BYTES", 4096)
    record = take_backup(sqlite_url)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    chunks = manifest["tables"]["notes/2026"]["chunks"]
    assert len(chunks) > 3 and all("/data/notes%2F2026/" in k for k in chunks)
    tables = read_backup(s3_client, bucket_name, record.manifest_key, keyring.keks[manifest["kek_id"]])
    assert tables["notes/2026"] == [[1, "学\n" * 5000], [2, None]]


def test_a_reader_written_from_the_spec_reads_a_mariadb_backup(
    mariadb_url, take_backup, keyring, s3_client, bucket_name
):
    import sqlalchemy as sa

    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE odd (id INT PRIMARY KEY, t TEXT, b BLOB, at TIMESTAMP NULL, n DECIMAL(12,3), "
            "f FLOAT, g INT AS (id * 2) VIRTUAL)"
        )
        conn.exec_driver_sql("SET time_zone = '+08:00'")
        conn.exec_driver_sql(
            "INSERT INTO odd (id, t, b, at, n, f) VALUES (1, 'a\\tb\\nc\\\\d 王', X'00FF095C', "
            "'2026-01-02 03:04:05', -1.5, 0.1), (2, '', NULL, NULL, NULL, NULL), (3, NULL, '', NULL, 0, 1e10)"
        )
    engine.dispose()
    record = take_backup(mariadb_url)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    assert manifest["version"] == 7 and manifest["tables"]["odd"]["encoding"] == "mysql-text"
    assert manifest["tables"]["odd"]["pack"]["count"] == 1  # a small table: in its connection's pack
    assert [c["name"] for c in manifest["tables"]["odd"]["columns"]] == ["id", "t", "b", "at", "n", "f"]
    tables = read_backup(s3_client, bucket_name, record.manifest_key, keyring.keks[manifest["kek_id"]])
    odd = {row[0]: row for row in tables["odd"]}
    assert odd[b"1"][:5] == [
        b"1",
        "a\tb\nc\\d 王".encode(),
        b"\x00\xff\t\\",
        b"2026-01-01 19:04:05",
        b"-1.500",
    ]
    assert float(odd[b"1"][5]) == 0.10000000149011612  # the FLOAT's exact value, widened to DOUBLE
    assert odd[b"2"][1] == b"" and odd[b"2"][2] is None and odd[b"3"][1] is None and odd[b"3"][2] == b""
    pre = [json.loads(line) for line in tables["schema pre-data"].splitlines()]
    assert any(s["kind"] == "table" and "`g` int(11) GENERATED ALWAYS" in s["sql"] for s in pre)
