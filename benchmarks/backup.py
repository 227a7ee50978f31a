"""Backup and restore: Dereg against `pg_dump | restic backup --stdin`, same database, same SeaweedFS.

The database is the demo school at scale (`benchmarks/pgdata.py`, 200,000 students and 2,000,000
attendance rows by default); both sides write to one local SeaweedFS S3 gateway started for the
run. Timed side by side:

- backup: `dereg backup` (PostgreSQL COPY text streamed on two connections sharing one snapshot,
  zstd, AES-256-GCM chunks sealed and uploaded by four threads, Object Lock, catalog) against
  `pg_dump --format=plain | restic backup --stdin` into a restic repository in the same store;
- restore: `dereg restore --verify --scratch-url <the source's server>` (every chunk decrypted,
  loaded with COPY FROM into a scratch schema, read back with COPY TO, row counts and content
  hashes compared with the manifest, schema dropped) against `restic dump latest | psql` into an
  empty database plus a row count of every table.

Each backup runs in its own process under GNU time, so peak memory (RSS) is measured too, at a
tenth and at all of the students: flat means it does not grow with the database.

    python -m benchmarks.backup [--students N] [--rounds R]

Needs restic (Debian: `apt-get install restic`) and GNU time (`/usr/bin/time`). Prints ratios;
goal: both at most 1.0 times restic's time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.pgdata import DEFAULT_URL, ensure

RESTIC_PASSWORD = "bench-only-restic-password"


def _timed(cmd: list[str] | str, env: dict, shell: bool = False) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB (GNU time, the largest process of the pipeline) and stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        wrapped = (
            ["/usr/bin/time", "-f", "%M", "-o", report.name, "bash", "-o", "pipefail", "-c", cmd]
            if shell
            else ["/usr/bin/time", "-f", "%M", "-o", report.name, *cmd]
        )
        started = time.perf_counter()
        done = subprocess.run(wrapped, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"{cmd if isinstance(cmd, str) else ' '.join(cmd)} failed:\n{done.stderr[-2000:]}"
            )
        peak = int(Path(report.name).read_text().strip().splitlines()[-1])
    return seconds, peak, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dereg backup/restore against pg_dump | restic")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--students", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed: apt-get install restic")

    from dereg.keys import Keyring
    from devtools.stack.ports import free_port
    from devtools.stack.seaweed import start_seaweedfs

    work = Path(tempfile.mkdtemp(prefix="dereg-bench-backup-"))
    server = None
    for _ in range(20):  # SeaweedFS also needs each port + 10000 free: pick low enough ones
        s3_port, base = free_port(), free_port()
        if max(s3_port, base + 2) + 10000 > 65535:
            continue
        try:
            server = start_seaweedfs(work / "seaweed", s3_port, base_port=base)
            break
        except Exception:  # noqa: BLE001 - a port taken meanwhile; try others
            continue
    if server is None:
        raise SystemExit("could not start SeaweedFS on free ports")
    try:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="bench-dereg", ObjectLockEnabledForBucket=True)
        s3.create_bucket(Bucket="bench-restic")
        Keyring.create(work / "keyring.json")
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "DEREG_KEYRING": str(work / "keyring.json"),
            "DEREG_STORE_URL": f"sqlite:///{work / 'compliance.db'}",
            "RESTIC_PASSWORD": RESTIC_PASSWORD,
            "RESTIC_REPOSITORY": f"s3:{server.endpoint_url}/bench-restic",
            "PGHOST": "127.0.0.1",
            "PGUSER": "postgres",
        }
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        print(
            f"dereg backup benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs"
        )
        results = {}
        for students in sorted({max(args.students // 10, 1000), args.students}):
            url = (
                args.url  # the given database holds 200,000 students; other sizes get their own
                if students == 200_000
                else args.url.rsplit("/", 1)[0] + f"/{sa.make_url(args.url).database}_{students}"
            )
            counts = ensure(url, students)
            database = sa.make_url(url).database
            rows = sum(counts.values())
            print(f"\n== {students:,} students: {rows:,} rows in {database} ==")
            best: dict[str, tuple[float, int]] = {}
            for _ in range(args.rounds):
                seconds, peak, out = _timed(
                    [
                        str(Path(sys.executable).with_name("dereg")),
                        "backup",
                        url,
                        "--to",
                        f"s3://bench-dereg/{database}",
                        "--company",
                        "bench",
                        "--retention-days",
                        "1",
                    ],
                    env,
                )
                backup_id = out.strip().splitlines()[-1]
                best["ours backup"] = min(best.get("ours backup", (1e9, 0)), (seconds, peak))
                seconds, peak, _ = _timed(
                    f"pg_dump --format=plain {database} | restic backup --stdin --stdin-filename {database}.sql --quiet",
                    env,
                    shell=True,
                )
                best["restic backup"] = min(best.get("restic backup", (1e9, 0)), (seconds, peak))
                seconds, peak, out = _timed(
                    [
                        str(Path(sys.executable).with_name("dereg")),  # the console entry, as a user runs it
                        "restore",
                        backup_id,
                        "--from",
                        f"s3://bench-dereg/{database}",
                        "--scratch-url",  # the default of the restore_verify stage: the source's server
                        url,
                        "--verify",
                    ],
                    env,
                )
                best["ours restore+verify"] = min(best.get("ours restore+verify", (1e9, 0)), (seconds, peak))
                target = f"{database}_restic_restore"
                subprocess.run(["dropdb", "--if-exists", target], env=env, check=True)
                subprocess.run(["createdb", target], env=env, check=True)
                count_sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in counts)
                seconds, peak, _ = _timed(
                    f"restic dump latest {database}.sql --quiet | psql --quiet --set ON_ERROR_STOP=1 {target} "
                    f'> /dev/null && psql -At {target} -c "{count_sql}" > /dev/null',
                    env,
                    shell=True,
                )
                best["restic restore+count"] = min(
                    best.get("restic restore+count", (1e9, 0)), (seconds, peak)
                )
                subprocess.run(["dropdb", "--if-exists", target], env=env, check=True)
            for name, (seconds, peak) in best.items():
                print(f"  {name:22s} {seconds:7.1f} s   peak RSS {peak / 1024:7.0f} MiB")
            results[students] = best
            print(
                f"  RATIO backup ours/restic = {best['ours backup'][0] / best['restic backup'][0]:.2f}x (goal <= 1.0)"
            )
            print(
                "  RATIO restore ours/restic = "
                f"{best['ours restore+verify'][0] / best['restic restore+count'][0]:.2f}x (goal <= 1.0)"
            )
        small, large = sorted(results)
        if small != large:
            growth = results[large]["ours backup"][1] / results[small]["ours backup"][1]
            print(
                f"\nRATIO peak RSS of our backup, {large:,} / {small:,} students = {growth:.2f}x "
                f"for {large / small:.0f}x the rows (flat: goal <= 1.25x)"
            )
        print(json.dumps({str(k): {n: v[0] for n, v in b.items()} for k, b in results.items()}))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
