"""The MariaDB/MySQL and SQLite fast readers (rowfast.py) against real servers: the same `json-rows`
bytes as the generic SQLAlchemy path, exact round trips of awkward values, and a dropped connection
mid-table failing clearly with nothing recorded as complete."""

from __future__ import annotations

import json

import pymysql
import pytest
import sqlalchemy as sa

from dereg.backup import archive, catalog, mysqltext, rowfast, writer
from dereg.backup.archive import table_digests
from dereg.backup.restore import restore_and_verify
from dereg.errors import BackupError

pytestmark = pytest.mark.integration

SECRET = "13912345678-王秀英"
TEXT_VALUES = ["", "tab\there", "new\nline\r\nCRLF", "王秀英 🎒 \u2028\u2029\x85", 'back\\slash "q" \x00nul']

MARIADB_DDL = """
CREATE TABLE awkward (
  id BIGINT PRIMARY KEY,
  big BIGINT, ubig BIGINT UNSIGNED, amount DECIMAL(30,10), ratio DOUBLE, flag BOOLEAN,
  born DATE, seen DATETIME(6), at_time TIME, label VARCHAR(80), body TEXT, raw VARBINARY(64),
  blobby LONGBLOB, doc JSON, colour ENUM('red','green')
) CHARACTER SET utf8mb4
"""

SQLITE_DDL = """
CREATE TABLE awkward (
  id INTEGER PRIMARY KEY, big INTEGER, amount NUMERIC(30,10), ratio REAL, flag BOOLEAN,
  born DATE, seen DATETIME, label VARCHAR(80), body TEXT, raw BLOB
)
"""


def _awkward_rows(mariadb: bool) -> list[dict]:
    rows = []
    for i, text in enumerate(TEXT_VALUES):
        row = {
            "id": i + 1,
            "big": [9223372036854775807, -9223372036854775808, 0, None, 42][i],
            "amount": ["12345678901234567890.0123456789", "-0.0000000001", "0", None, "1.5"][i],
            "ratio": [0.1, -1e300, None, 3.0, 2.5e-7][i],
            "flag": [True, False, None, True, False][i],
            "born": ["2016-04-11", None, "1900-01-01", "2099-12-31", "2000-02-29"][i],
            "seen": ["2024-01-02 03:04:05.123456", "1970-01-01 00:00:00", None, "2024-02-29 23:59:59", None][
                i
            ],
            "label": [text[:80], None, "x", "", SECRET][i],
            "body": text,
            "raw": [b"\x00\xff\n\t\\", b"", None, SECRET.encode(), bytes(range(32))][i],
        }
        if mariadb:
            row["ubig"] = [9223372036854775807, None, 0, 1, 2][i]  # scratch SQLite holds 64-bit signed
            row["at_time"] = ["12:34:56", None, "00:00:00", "23:59:59", "-01:00:00"][i]
            row["blobby"] = [bytes(range(256)) * 3, None, b"", b"\n", b"\t"][i]
            row["doc"] = ['{"b": [1, 2.5, null], "a": "王"}', None, "[]", '"tab\\t"', '{"n": 1e3}'][i]
            row["colour"] = ["red", "green", None, "red", "green"][i]
        if not mariadb and i == 4:
            row["big"] = "not a number"  # SQLite's loose typing: kept as text by both paths
        rows.append(row)
    return rows


def _make_awkward(url: str, mariadb: bool) -> None:
    engine = sa.create_engine(url)
    rows = _awkward_rows(mariadb)
    columns = list(rows[0])
    insert = f"INSERT INTO awkward ({', '.join(columns)}) VALUES ({', '.join('%s' if mariadb else '?' for _ in columns)})"
    with engine.begin() as conn:
        conn.exec_driver_sql(MARIADB_DDL if mariadb else SQLITE_DDL)
        conn.exec_driver_sql(insert, [tuple(r[c] for c in columns) for r in rows])
        # a table without a primary key (ordered by every column) and an empty one
        conn.exec_driver_sql("CREATE TABLE nokey (a INTEGER, b VARCHAR(10))")
        conn.exec_driver_sql("INSERT INTO nokey VALUES (2, 'b'), (1, NULL), (1, 'a'), (NULL, 'z')")
        conn.exec_driver_sql("CREATE TABLE empty_one (id INTEGER PRIMARY KEY)")
    engine.dispose()


@pytest.mark.parametrize("server", ["mariadb_url", "sqlite_url"])
def test_fast_path_writes_the_generic_bytes_and_round_trips(
    server, request, take_backup, location, keyring, store, monkeypatch
):
    url = request.getfixturevalue(server)
    _make_awkward(url, mariadb=server == "mariadb_url")
    assert rowfast.supports(sa.create_engine(url))
    # MariaDB's json-rows path, used when the mysqlclient driver is missing (test_mysql_text below)
    monkeypatch.setattr(archive, "NATIVE_ROWS", {})
    monkeypatch.setattr(rowfast, "FAST_BATCH", 2)  # several batches even for these small tables

    used = []
    real = rowfast.stream_rows
    monkeypatch.setattr(rowfast, "stream_rows", lambda *a, **k: used.append(a[1].name) or real(*a, **k))
    fast = take_backup(url, run_id="fast")
    assert sorted(used) == ["awkward", "empty_one", "nokey"]
    used.clear()
    generic = take_backup(url, run_id="generic", fast=False)
    assert used == []

    assert fast.tables.keys() == generic.tables.keys()
    for name in fast.tables:
        assert fast.tables[name]["rows"] == generic.tables[name]["rows"], name
        assert fast.tables[name]["sha256"] == generic.tables[name]["sha256"], name
    assert fast.tables["awkward"]["rows"] == len(TEXT_VALUES) and fast.tables["nokey"]["rows"] == 4
    # erase's check against the backup computes the same hashes again (dereg.erase.sources)
    engine = sa.create_engine(url)
    again = table_digests(engine, [(None, name) for name in fast.tables])
    engine.dispose()
    assert {n: list(v) for (_s, n), v in again.items()} == {
        n: [t["rows"], t["sha256"]] for n, t in fast.tables.items()
    }

    report = restore_and_verify(fast.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems


def test_a_dropped_mariadb_connection_mid_table_fails_naming_the_table(
    mariadb_url, take_backup, store, monkeypatch
):
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE big_one (id INT PRIMARY KEY, note VARCHAR(255))")
        # ~12 MB: far more than the socket buffers hold, so the server is still sending when killed
        conn.exec_driver_sql(
            "INSERT INTO big_one SELECT seq, CONCAT(%s, REPEAT('x', 220)) FROM seq_1_to_50000", (SECRET,)
        )
    engine.dispose()
    monkeypatch.setattr(mysqltext, "BATCH", 1000)

    real_batches = mysqltext._batches

    def batches_then_kill(cursor, size):
        for n, batch in enumerate(real_batches(cursor, size)):
            yield batch
            if n == 0:  # the server's connection is killed, as a crash or a network cut would
                killer = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
                try:
                    killer.cursor().execute(f"KILL CONNECTION {cursor.connection.thread_id()}")
                finally:
                    killer.close()

    monkeypatch.setattr(mysqltext, "_batches", batches_then_kill)
    with pytest.raises(
        BackupError, match="connection to the source was lost while reading table big_one"
    ) as e:
        take_backup(mariadb_url)
    assert SECRET not in str(e.value) and "xxxx" not in str(e.value)
    assert catalog.list_backups(store) == []  # nothing complete
    [failed] = catalog.list_backups(store, status="failed")
    assert "big_one" in failed["error"] and SECRET not in failed["error"]


MYSQL_TEXT_DDL = [
    """CREATE TABLE odd_types (
      id INT AUTO_INCREMENT PRIMARY KEY, f FLOAT, d DOUBLE, b BIT(12), z DATE, zt DATETIME(3),
      ts TIMESTAMP(6) NULL, y YEAR, s SET('a','b','c'), l1 VARCHAR(20) CHARACTER SET latin1,
      bin BINARY(4), twice INT AS (y * 2) VIRTUAL, kept INT AS (f IS NULL) PERSISTENT,
      note TEXT COLLATE utf8mb4_unicode_ci
    ) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci""",
    "SET SESSION sql_mode = ''",
    "SET SESSION time_zone = '+08:00'",
    """INSERT INTO odd_types (id, f, d, b, z, zt, ts, y, s, l1, bin, note) VALUES
      (0, 1/3, 0.1e0 + 0.2e0, b'100100001010', '0000-00-00', '0000-00-00 00:00:00.000',
       '2024-03-01 08:00:00.123456', 1999, 'a,c', 'caf\xe9', X'00095C0A', 'x\\N'),
      (7, -3.4e38, -1e-300, b'0', '2024-00-10', '1000-01-01 00:00:00.001', NULL, NULL, '', '', X'0D0A0000',
       '\\N'),
      (9, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)""",
]


def _independent_view(url: str) -> dict:
    """Every table's SHOW CREATE TABLE (AUTO_INCREMENT counter left out), CHECKSUM TABLE and rows
    through SQLAlchemy's generic path: what the restore must give back, read without mysqltext."""
    import re

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = sorted(sa.inspect(conn).get_table_names())
            view = {}
            for name in tables:
                quoted = "`" + name.replace("%", "%%") + "`"
                create = conn.exec_driver_sql(f"SHOW CREATE TABLE {quoted}").fetchone()[1]
                checksum = conn.exec_driver_sql(f"CHECKSUM TABLE {quoted}").fetchone()[1]
                view[name] = (re.sub(r" AUTO_INCREMENT=\d+", "", create), checksum)
            generic = table_digests(conn, [(None, n) for n in tables])  # a Connection: generic path
        return {n: (*view[n], generic[(None, n)]) for n in tables}
    finally:
        engine.dispose()


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "own-chunks"])
def test_mysql_text_round_trips_every_byte_into_a_fresh_database(
    packed,
    mariadb_url,
    second_mariadb_url,
    take_backup,
    location,
    keyring,
    store,
    monkeypatch,
    s3_client,
    bucket_name,
):
    """Format 5 on MariaDB: the server writes the rows (mysql-text), read through mysqlclient on
    two connections in one snapshot (format 6: small tables in a pack per connection), loaded back
    by LOAD DATA LOCAL INFILE; the copy equals the
    source by SHOW CREATE TABLE, CHECKSUM TABLE and the generic reader (awkward text and binary,
    NULL against empty against the text \\N, FLOAT, BIT, zero dates, TIMESTAMP across time zones,
    latin1, generated columns, a 0 in an AUTO_INCREMENT key, a table without a key, a % in a name)."""
    _make_awkward(mariadb_url, mariadb=True)
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        for statement in MYSQL_TEXT_DDL:
            conn.exec_driver_sql(statement.replace("%", "%%"))
        conn.exec_driver_sql("CREATE TABLE `50%%_off` (id INT PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO `50%%_off` VALUES (1)")
    engine.dispose()
    monkeypatch.setattr(mysqltext, "BATCH", 2)  # several batches even for these small tables
    monkeypatch.setattr(mysqltext, "LOAD_BYTES", 64)  # and several LOAD DATA statements
    monkeypatch.setattr(mysqltext, "PARALLEL_BYTES", 0)  # two connections even for small tables
    # format 6: the small tables in their connection's pack, cut into many chunks, so that tables
    # begin inside a chunk and spread over several
    monkeypatch.setattr(writer, "CHUNK_BYTES", 64)
    if not packed:  # every table in chunks of its own, as a large one is
        monkeypatch.setattr(mysqltext, "PACK_BELOW", 0)
    record = take_backup(mariadb_url)
    assert record.tables["odd_types"]["rows"] == 3 and record.tables["nokey"]["rows"] == 4
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    assert "2 connections" in manifest["mysql"]["snapshot"], manifest["mysql"]
    assert any(len(t["chunks"]) > 1 for t in manifest["tables"].values())
    packs = [t["pack"] for t in manifest["tables"].values() if "pack" in t]
    if packed:
        # one pack per connection that read small tables
        assert len(packs) == len(manifest["tables"]) and 1 <= len({p["name"] for p in packs}) <= 2
        assert any(p["offset"] > 0 for p in packs)
    else:
        assert packs == []
    assert [c["name"] for c in manifest["tables"]["odd_types"]["columns"]][-1] == "note"  # no generated ones
    # erase's check against the backup computes the same hashes again
    engine = sa.create_engine(mariadb_url)
    again = table_digests(engine, [(None, name) for name in record.tables])
    engine.dispose()
    assert {n: list(v) for (_s, n), v in again.items()} == {
        n: [t["rows"], t["sha256"]] for n, t in record.tables.items()
    }
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, into_url=second_mariadb_url
    )
    assert report.ok and report.schema_rebuilt, report.problems
    assert _independent_view(second_mariadb_url) == _independent_view(mariadb_url)
    # the restore_verify stage's scratch SQLite holds each field's exact bytes
    scratch = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert scratch.ok, scratch.problems


def test_mysql_text_without_the_reload_privilege_reads_on_one_connection_and_says_so(
    mariadb_url, take_backup, monkeypatch, s3_client, bucket_name
):
    import secrets

    _make_awkward(mariadb_url, mariadb=True)
    database = sa.make_url(mariadb_url).database
    user, password = f"mysql_ro_{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = sa.create_engine(mariadb_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{password}'")
        conn.exec_driver_sql(f"GRANT SELECT, SHOW VIEW, TRIGGER ON `{database}`.* TO '{user}'@'%%'")
    try:
        monkeypatch.setattr(mysqltext, "PARALLEL_BYTES", 0)  # it would use two connections
        url = sa.make_url(mariadb_url).set(username=user, password=password)
        lines: list[str] = []
        record = take_backup(url.render_as_string(hide_password=False), progress=lines.append)
        manifest = json.loads(
            s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read()
        )
        assert manifest["mysql"]["snapshot"].startswith(
            "one connection: FLUSH TABLES WITH READ LOCK was refused"
        )
        assert any(line.startswith("WARNING: one connection") for line in lines), lines
        assert record.tables["awkward"]["rows"] == len(TEXT_VALUES)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
        admin.dispose()


def test_a_tampered_pack_chunk_fails_its_tables_naming_it_and_leaves_nothing(
    mariadb_url,
    second_mariadb_url,
    make_source,
    take_backup,
    location,
    keyring,
    store,
    s3_client,
    bucket_name,
):
    make_source(mariadb_url)
    record = take_backup(mariadb_url)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    key = manifest["tables"]["students"]["chunks"][0]
    assert "/packs/" in key
    blob = bytearray(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    blob[len(blob) // 2] ^= 0x01
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=bytes(blob))
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert not report.ok
    assert any(
        p.startswith("students:") and key in p and "fails authentication" in p for p in report.problems
    )
    into = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, into_url=second_mariadb_url
    )
    assert not into.ok and "nothing of it is left" in into.problems[-1]
    engine = sa.create_engine(second_mariadb_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
