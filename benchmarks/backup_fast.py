"""Backup fast readers against the generic SQLAlchemy path: MariaDB and SQLite, one table each.

Seeds a table of `--rows` rows (1,000,000 by default: id, two texts, a decimal, a date, a
datetime, a small blob, a text with NULLs) in a fresh MariaDB database `dbfast_bench_<hex>` and in a
SQLite file, then times `create_backup` on it with `fast=False` (rows through SQLAlchemy) and with
the fast reader (raw driver cursor, rowfast.py), into a local SeaweedFS started for the run. Both
are the whole backup (read, encode, hash, zstd, AES-256-GCM, upload, manifest). The two backups'
plaintext hashes must be equal (same bytes); the script prints the times and the ratio, and drops
what it created.

    python -m benchmarks.backup_fast [--rows N] [--mariadb-admin-url URL] [--only mariadb|sqlite]
"""

from __future__ import annotations

import argparse
import os
import secrets
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.store import s3_client, start_store

MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/"

MARIADB_TABLE = """
CREATE TABLE people (
  id BIGINT PRIMARY KEY, name VARCHAR(60) NOT NULL, email VARCHAR(80), amount DECIMAL(12,2),
  born DATE, seen DATETIME, photo VARBINARY(16), note TEXT
) CHARACTER SET utf8mb4
"""
MARIADB_SEED = """
INSERT INTO people
SELECT seq, CONCAT('名字 ', seq), CONCAT('user', seq, '@example.cn'), seq / 100,
       DATE('1950-01-01') + INTERVAL (seq MOD 20000) DAY,
       TIMESTAMP('2020-01-01 00:00:00') + INTERVAL seq SECOND,
       IF(seq MOD 3 = 0, NULL, UNHEX(MD5(seq))), IF(seq MOD 2 = 0, NULL, CONCAT('note\\t', seq, '\\n'))
FROM seq_1_to_{rows}
"""
SQLITE_TABLE = """
CREATE TABLE people (
  id INTEGER PRIMARY KEY, name VARCHAR(60) NOT NULL, email VARCHAR(80), amount NUMERIC(12,2),
  born DATE, seen DATETIME, photo BLOB, note TEXT
)
"""
SQLITE_SEED = """
WITH RECURSIVE n(seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM n WHERE seq < {rows})
INSERT INTO people
SELECT seq, '名字 ' || seq, 'user' || seq || '@example.cn', seq / 100.0,
       date('1950-01-01', '+' || (seq % 20000) || ' days'),
       datetime('2020-01-01 00:00:00', '+' || seq || ' seconds'),
       CASE WHEN seq % 3 = 0 THEN NULL ELSE randomblob(16) END,
       CASE WHEN seq % 2 = 0 THEN NULL ELSE 'note' || char(9) || seq || char(10) END
FROM n
"""


def _compare(label: str, url: str, work: Path, location, rows: int) -> None:
    from dereg.backup import archive
    from dereg.backup.archive import create_backup
    from dereg.evidence.store import open_store
    from dereg.keys import Keyring

    # json-rows against json-rows: MariaDB's native mysql-text path is benchmarks/backup_mysql.py's
    archive.NATIVE_ROWS = {}

    keyring = Keyring.create(work / f"{label}-keyring.json")
    store = open_store(f"sqlite:///{work / f'{label}-compliance.db'}")
    engine = sa.create_engine(url)
    timings, hashes = {}, {}
    try:
        for path, fast in (("generic", False), ("fast", True)):
            started = time.perf_counter()
            record = create_backup(
                engine,
                company_id="bench",
                run_id=f"{label}-{path}",
                source_id=label,
                location=location,
                keyring=keyring,
                store=store,
                retention_days=1,
                object_lock=False,
                fast=fast,
            )
            timings[path] = time.perf_counter() - started
            hashes[path] = record.tables["people"]["sha256"]
            assert record.tables["people"]["rows"] == rows, record.tables
    finally:
        engine.dispose()
        store.dispose()
    same = "same bytes" if hashes["generic"] == hashes["fast"] else "DIFFERENT BYTES"
    print(f"  {label:8s} generic {timings['generic']:6.1f} s   fast {timings['fast']:6.1f} s   ({same})")
    print(f"  RATIO {label} fast/generic = {timings['fast'] / timings['generic']:.2f}x")
    if hashes["generic"] != hashes["fast"]:
        raise SystemExit(f"{label}: the fast path wrote different bytes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Backup fast readers against the generic path")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--mariadb-admin-url", default=MARIADB_ADMIN_URL)
    parser.add_argument("--only", choices=["mariadb", "sqlite"])
    args = parser.parse_args(argv)

    from dereg.connections import S3Location

    work = Path(tempfile.mkdtemp(prefix="dereg-bench-dbfast-"))
    server = start_store(work)
    try:
        s3_client(server).create_bucket(Bucket="bench-dbfast")
        location = S3Location(
            server.endpoint_url, server.access_key, server.secret_key, "us-east-1", "bench-dbfast", "b"
        )
        print(
            f"backup fast readers, {args.rows:,} rows, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} CPUs"
        )
        if args.only in (None, "mariadb"):
            name = f"dbfast_bench_{secrets.token_hex(4)}"
            admin = sa.create_engine(args.mariadb_admin_url)
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            try:
                url = args.mariadb_admin_url.rstrip("/") + f"/{name}?charset=utf8mb4"
                seed = sa.create_engine(url)
                with seed.begin() as conn:
                    conn.exec_driver_sql(MARIADB_TABLE)
                    conn.exec_driver_sql(MARIADB_SEED.format(rows=args.rows))
                seed.dispose()
                _compare("mariadb", url, work, location, args.rows)
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
                admin.dispose()
        if args.only in (None, "sqlite"):
            path = work / "dbfast_bench.db"
            url = f"sqlite:///{path}"
            seed = sa.create_engine(url)
            with seed.begin() as conn:
                conn.exec_driver_sql(SQLITE_TABLE)
                conn.exec_driver_sql(SQLITE_SEED.format(rows=args.rows))
            seed.dispose()
            _compare("sqlite", url, work, location, args.rows)
    finally:
        server.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
