"""Per-subject keys: backup time and size against a plain backup of the same database.

The database is the demo school at scale (`benchmarks/pgdata.py`, 200,000 students by default, in a
database of its own). The seal spec is what the backup stage would take from the demo manifest's
erasure plan (inventory, classification and plan run once, not timed). Each round takes a plain
backup (`subjects=None`: no per-subject keys) and a sealed one (format 7: every personal column of
the subjects' rows in its subject group's block, under that group's key; with `--ggm` also format 6,
each subject's values under its own key) in the same process, into the same local SeaweedFS, one
after the other; the times are `create_backup`'s whole run (read, seal, hash, zstd, AES-256-GCM,
upload, manifest, Object Lock read back, catalog) and the sizes are the bytes stored under each
backup's prefix plus its escrowed key set.

    python -m benchmarks.subject_keys [--url URL] [--students N] [--rounds R] [--ggm]

Prints the ratios sealed / plain; goal: at most 1.3x in time and in size. Plain and sealed backups
alternate (plain first in odd rounds, sealed first in even ones), so each round's sealed backup has
a plain one taken next to it under the same load: beside the ratio of the medians, the median of
those per-round ratios (every round counted), and per backup the CPU time (user + system) of this
process and of the processes it waited for (psql, pg_dump), and of this process alone. On a shared
machine the CPU time moves far less than the wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.pgdata import ensure

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/shred_bench"


def _stored_bytes(s3, bucket: str, prefix: str) -> int:
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        total += sum(o["Size"] for o in page.get("Contents", []))
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="per-subject keys against a plain backup")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--students", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ggm", action="store_true", help="also format 6 (one key per subject)")
    args = parser.parse_args(argv)

    import boto3

    from benchmarks.erase import plan_for
    from dereg.backup.archive import create_backup
    from dereg.backup.subjectkeys import escrow_key, spec_from_plan
    from dereg.connections import S3Location
    from dereg.evidence.store import open_store
    from dereg.keys import Keyring
    from devtools.stack.ports import free_port
    from devtools.stack.seaweed import start_seaweedfs

    counts = ensure(args.url, args.students)
    work = Path(tempfile.mkdtemp(prefix="dereg-bench-subject-keys-"))
    server = None
    for _ in range(20):
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
    engine = sa.create_engine(args.url)
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
            region_name="us-east-1",
        )
        location = S3Location(
            server.endpoint_url, server.access_key, server.secret_key, "us-east-1", "bench-shred", "b"
        )
        keyring = Keyring.create(work / "keyring.json")
        store = open_store(f"sqlite:///{work / 'compliance.db'}")
        plan = plan_for(args.url)
        from datetime import date

        from dereg.classify.engine import classify_source
        from dereg.inventory.sql import inventory_source

        classification = classify_source(
            engine,
            inventory_source(engine, "school_db"),
            closure_date=date(2026, 12, 31),
            subject_table="students",
        )
        personal: dict[str, list[str]] = {}
        for c in classification.columns:
            if c.personal:
                personal.setdefault(c.table, []).append(c.column)
        spec = spec_from_plan(plan, personal)
        print(
            f"per-subject keys benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            f"{counts.get('students', 0):,} students, {sum(counts.values()):,} rows in {sa.make_url(args.url).database}"
        )
        print("sealed: " + "; ".join(f"{t} ({', '.join(s.columns)})" for t, s in spec.tables.items()))
        kinds = ("plain", "sealed", "ggm") if args.ggm else ("plain", "sealed")
        times: dict[str, list[float]] = {k: [] for k in kinds}
        cpus: dict[str, list[float]] = {k: [] for k in kinds}
        sizes: dict[str, int] = {}
        sealed_rows = 0
        for round_ in range(args.rounds):
            # every other round in the other order: a load that rises or falls through a round weighs
            # on the plain and the sealed backups alike, not always on the second
            for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
                before = (
                    resource.getrusage(resource.RUSAGE_SELF),
                    resource.getrusage(resource.RUSAGE_CHILDREN),
                )
                started = time.perf_counter()
                record = create_backup(
                    engine,
                    company_id="bench",
                    run_id=f"{kind}-{round_}",
                    source_id="school_db",
                    location=location,
                    keyring=keyring,
                    store=store,
                    retention_days=1,
                    object_lock=True,
                    subjects=spec if kind != "plain" else None,
                    subject_scheme="ggm" if kind == "ggm" else "groups",
                )
                seconds = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
                spent = [
                    a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime
                    for a, b in zip(after, before, strict=True)
                ]
                cpu = sum(spent)
                times[kind].append(seconds)
                cpus[kind].append(cpu)
                sizes[kind] = _stored_bytes(s3, location.bucket, location.key(record.backup_id) + "/")
                if kind == "sealed":
                    blocks = _stored_bytes(
                        s3, location.bucket, location.key(record.backup_id, "groups") + "/"
                    )
                if kind != "plain":
                    sizes[kind] += s3.head_object(
                        Bucket=location.bucket, Key=escrow_key(location, record.backup_id)
                    )["ContentLength"]
                label = {"plain": "plain", "sealed": "format 7", "ggm": "format 6"}[kind]
                print(
                    f"  round {round_ + 1} {label:8} backup {seconds:6.2f} s  {sizes[kind] / 2**20:8.1f} MiB  "
                    f"CPU {cpu:5.2f} s (this process {spent[0]:5.2f} s)  load {Path('/proc/loadavg').read_text().split()[0]}"
                )
                if kind == "sealed":
                    manifest = json.loads(
                        s3.get_object(Bucket=location.bucket, Key=record.manifest_key)["Body"].read()
                    )
                    sealed_rows = sum(
                        t["sealed"]["rows"] for t in manifest["tables"].values() if t.get("sealed")
                    )
        plain, sealed = statistics.median(times["plain"]), statistics.median(times["sealed"])
        print(
            f"RATIO backup time sealed/plain = {sealed / plain:.2f}x (format 7, subject group blocks; median of "
            f"{args.rounds}; goal <= 1.3)"
        )
        pairs = sorted(s / p for s, p in zip(times["sealed"], times["plain"], strict=True))
        print(
            f"RATIO backup time sealed/plain, median of the {args.rounds} rounds' own ratios = "
            f"{statistics.median(pairs):.2f}x (each round: {', '.join(f'{r:.2f}x' for r in pairs)}, sorted)"
        )
        print(
            f"RATIO client CPU (user+system, this process and its children) sealed/plain = "
            f"{statistics.median(cpus['sealed']) / statistics.median(cpus['plain']):.2f}x "
            f"(medians {statistics.median(cpus['sealed']):.2f} s vs {statistics.median(cpus['plain']):.2f} s)"
        )
        print(
            f"RATIO stored size sealed/plain = {sizes['sealed'] / sizes['plain']:.2f}x (format 7) "
            f"({(sizes['sealed'] - sizes['plain']) / max(counts.get('students', 1), 1):.0f} bytes per student, "
            f"{(sizes['sealed'] - sizes['plain']) / max(sealed_rows, 1):.0f} per sealed row; goal <= 1.3)"
        )
        print(
            f"sealed rows {sealed_rows:,} of {sum(counts.values()):,}; extra time per sealed row "
            f"{(sealed - plain) / max(sealed_rows, 1) * 1e6:.1f} us"
        )
        print(
            f"format 7 group blocks: {blocks / 2**20:.1f} MiB in all, {blocks / max(manifest['subject_keys']['groups'], 1) / 1024:.0f} kB "
            f"per group of {manifest['subject_keys']['group_size']} subjects (what one shred writes again)"
        )
        if args.ggm:
            ggm = statistics.median(times["ggm"])
            print(
                f"format 6 (one key per subject), for comparison: time {ggm / plain:.2f}x, "
                f"size {sizes['ggm'] / sizes['plain']:.2f}x"
            )
    finally:
        engine.dispose()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)  # SeaweedFS's data: about 400 MB for 3 rounds
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
