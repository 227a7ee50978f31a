"""Peak memory of backing up and restoring one huge value (issue 18, item 13).

Seeds a PostgreSQL database `large_cell_bench_<hex>` with a table holding one `--mb` MB text value
(200 by default) and a few small rows, then runs, each in its own process so its peak RSS is its
own: the backup (COPY into 2 MiB chunks, sealed and uploaded to a local SeaweedFS), the restore
into a scratch schema on the same server, and the restore into scratch SQLite. Prints each peak
RSS and its ratio to the value's size, and drops what it created. Before format version 3 a chunk
held whole lines, so one 200 MB value took 1.1 GB to back up and 1.6 GB to restore.

    python -m benchmarks.large_cell [--mb N] [--pg-admin-url URL] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks import own_peak_mib

PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def _phase(spec: dict) -> dict:
    """One phase in this process; returns its result and peak RSS."""
    from dereg.backup.archive import create_backup
    from dereg.backup.restore import restore_and_verify
    from dereg.connections import S3Location
    from dereg.evidence.store import open_store
    from dereg.keys import Keyring

    location = S3Location(*spec["location"])
    keyring = Keyring.load(Path(spec["keyring"]))
    store = open_store(spec["store"])
    started = time.perf_counter()
    if spec["phase"] == "backup":
        engine = sa.create_engine(spec["source"])
        record = create_backup(
            engine,
            company_id="bench",
            run_id="large-cell",
            source_id="big",
            location=location,
            keyring=keyring,
            store=store,
            retention_days=1,
            object_lock=False,
        )
        engine.dispose()
        result = {"backup_id": record.backup_id, "chunks": record.tables["big"]["chunks"]}
    else:
        report = restore_and_verify(
            spec["backup_id"],
            location=location,
            keyring=keyring,
            store=store,
            scratch_url=spec["source"] if spec["phase"] == "restore-pg" else None,
        )
        result = {"ok": report.ok, "problems": report.problems}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["peak_rss_mb"] = own_peak_mib()  # not ru_maxrss: it holds the parent's RSS at the fork
    return result


def _run(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.large_cell", "--phase", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{spec['phase']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Peak memory of one huge value through backup and restore")
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    parser.add_argument("--no-sqlite", action="store_true", help="skip the restore into scratch SQLite")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(_phase(json.loads(args.phase))))
        return 0

    from benchmarks.store import start_store
    from dereg.keys import Keyring

    work = Path(tempfile.mkdtemp(prefix="dereg-bench-large-cell-"))
    name = f"large_cell_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
    server = start_store(work)
    try:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name="us-east-1",
        ).create_bucket(Bucket="bench-large-cell")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        source = args.pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
        engine = sa.create_engine(source)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE big (id integer PRIMARY KEY, body text)")
            conn.exec_driver_sql(
                "INSERT INTO big SELECT 1, repeat(E'学x\\t', %s)", ((args.mb * 1024 * 1024) // 5,)
            )
            conn.exec_driver_sql("INSERT INTO big SELECT g, 'small ' || g FROM generate_series(2, 100) g")
        engine.dispose()
        Keyring.create(work / "keyring.json")
        spec = {
            "location": [
                server.endpoint_url,
                server.access_key,
                server.secret_key,
                "us-east-1",
                "bench-large-cell",
                "b",
            ],
            "keyring": str(work / "keyring.json"),
            "store": f"sqlite:///{work / 'compliance.db'}",
            "source": source,
        }
        print(
            f"one {args.mb} MB value, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs"
        )
        backup = _run({**spec, "phase": "backup"})
        print(
            f"  backup          peak RSS {backup['peak_rss_mb']:5d} MB  ({backup['chunks']} chunks, "
            f"{backup['seconds']} s)  RATIO peak/value = {backup['peak_rss_mb'] / args.mb:.2f}x"
        )
        for phase in ("restore-pg",) if args.no_sqlite else ("restore-pg", "restore-sqlite"):
            done = _run({**spec, "phase": phase, "backup_id": backup["backup_id"]})
            if not done["ok"]:
                raise SystemExit(f"{phase}: {done['problems']}")
            print(
                f"  {phase:15s} peak RSS {done['peak_rss_mb']:5d} MB  ({done['seconds']} s, verified)  "
                f"RATIO peak/value = {done['peak_rss_mb'] / args.mb:.2f}x"
            )
    finally:
        server.stop()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
