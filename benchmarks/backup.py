"""Backup and restore: Dereg against `pg_dump | restic`, schema included on both sides, same SeaweedFS.

PostgreSQL (`pg_compare`): the demo school at scale (`benchmarks/pgdata.py`, a tenth of the
students and all of them, 200,000 by default) and pagila (../shared/realworld/pagila, loaded by its
own load.sh into `<database>_pagila`); both sides write to one local SeaweedFS S3 gateway started for
the run. Timed side by side, each in its own process under GNU time (wall time, peak RSS):

- backup: `dereg backup` (format version 6: pg_dump --schema-only in the backup's snapshot while
  the rows are COPYed on two connections, zstd, AES-256-GCM chunks, Object Lock) against
  `pg_dump --format=plain | restic backup --stdin` into a fresh restic repository in the same
  store (one per round: a closure's backup is the company's first; the same dump backed up again
  into the same repository is deduplicated, stores nothing, and is printed apart for reference);
- restore: `dereg restore ID --into <fresh database> --verify` (schema, rows read back and hashed,
  keys, indexes, foreign keys) against `restic dump latest | psql <fresh database>` plus a row
  count of every table.

Untimed on both sides, as in a deployment: restic's repositories are initialised, and our compliance
store is made and migrated and dereg's modules byte-compiled (`benchmarks.store.prepare_dereg`).

Then, independently of Dereg, each restored copy is compared with the source (`pg_equal`):
`pg_dump --schema-only` of both, normalised, and every table's row count; ours must be equal.

    python -m benchmarks.backup [--url URL] [--students N] [--rounds R] [--no-pagila]

Needs restic (Debian: `apt-get install restic`), pg_dump/psql and GNU time (`/usr/bin/time`).
Prints ratios; goal: both at most 0.8 times restic's time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.pgdata import DEFAULT_URL, ensure
from benchmarks.store import dereg_and_restic_buckets, prepare_dereg, start_store

RESTIC_PASSWORD = "bench-only-restic-password"
PAGILA = next(
    (
        d / "shared" / "realworld" / "pagila"
        for d in Path(__file__).resolve().parents
        if (d / "shared" / "realworld" / "pagila").is_dir()
    ),
    Path(os.environ.get("DEREG_REALWORLD", "/nonexistent")) / "pagila",
)


# CPU seconds (user + system) of the last `_timed` command and the children it waited for (GNU
# time): the client side's work, which the load of other jobs on a shared machine hardly changes
LAST_CPU = [0.0]


def _timed(cmd: list[str] | str, env: dict, shell: bool = False) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB (GNU time, the largest process of the pipeline) and stdout;
    CPU seconds in LAST_CPU."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        wrapped = (
            ["/usr/bin/time", "-f", "%M %U %S", "-o", report.name, "bash", "-o", "pipefail", "-c", cmd]
            if shell
            else ["/usr/bin/time", "-f", "%M %U %S", "-o", report.name, *cmd]
        )
        started = time.perf_counter()
        done = subprocess.run(wrapped, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"{cmd if isinstance(cmd, str) else ' '.join(cmd)} failed:\n{done.stderr[-2000:]}"
            )
        fields = Path(report.name).read_text().strip().splitlines()[-1].split()
        peak = int(fields[0])
        LAST_CPU[0] = sum(float(f) for f in fields[1:3])
    return seconds, peak, done.stdout


def _env(server, work: Path) -> dict:
    return {
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


# --- PostgreSQL, schema included on both sides ------------------------------------------------
def _psql(env: dict, database: str, sql: str) -> str:
    return subprocess.run(
        ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _fresh_database(env: dict, name: str) -> None:
    _psql(env, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _psql(env, "postgres", f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")


def pg_tables(env: dict, database: str) -> list[str]:
    """Every ordinary table of the user schemas (partitions included, partitioned parents not)."""
    out = _psql(
        env,
        database,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1",
    )
    return out.split()


def pg_row_counts(env: dict, database: str, tables: list[str]) -> dict[str, int]:
    sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)
    return {k: int(v) for k, v in (line.split("|") for line in _psql(env, database, sql).splitlines())}


def pg_schema_text(env: dict, database: str) -> str:
    """`pg_dump --schema-only` normalised: no comments, psql meta-commands or session SET lines."""
    out = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", database],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return "\n".join(
        line
        for line in out.splitlines()
        if line.strip() and not re.match(r"^(--|\\(un)?restrict |SET |SELECT pg_catalog.set_config)", line)
    )


def pg_equal(env: dict, source: str, copy: str) -> tuple[bool, bool, int]:
    """Independent of Dereg: (schema equal by pg_dump, every table's row count equal, tables)."""
    tables = pg_tables(env, source)
    schema_ok = pg_schema_text(env, source) == pg_schema_text(env, copy)
    counts_ok = pg_row_counts(env, source, tables) == pg_row_counts(env, copy, tables)
    return schema_ok, counts_ok, len(tables)


#: database -> step name -> peak RSS (KiB) of every round: the memory ratio is also given by the
#: rounds' medians, as the best round's peak alone moves by a tenth from run to run
PEAKS: dict[str, dict[str, list[int]]] = {}


def pg_compare(env: dict, url: str, *, label: str, rounds: int) -> dict[str, tuple[float, int]]:
    """Ours against `pg_dump | restic` on one PostgreSQL database, schema included on both sides:
    backup, and restore into a fresh database (ours: `dereg restore --into --verify`; restic's:
    `restic dump | psql` and a row count of every table). Best of `rounds` (and, with more than
    one, the medians' ratios too); prints and returns
    name -> (seconds, peak RSS KiB)."""
    database = sa.make_url(url).database
    dereg = str(Path(sys.executable).with_name("dereg"))  # the console entry, as a user runs it
    tables = pg_tables(env, database)
    rows = sum(pg_row_counts(env, database, tables).values())
    print(f"\n== {label}: {rows:,} rows in {len(tables)} tables of {database}, schema included ==")
    ours_target, restic_target = f"{database}_ours_restore", f"{database}_restic_restore"
    best: dict[str, tuple[float, int]] = {}
    cpu: dict[str, float] = {}
    every: dict[str, list[float]] = {}
    repeats: list[float] = []  # restic's deduplicated repeats (for reference)

    def keep(name: str, seconds: float, peak: int) -> None:
        every.setdefault(name, []).append(seconds)
        PEAKS.setdefault(database, {}).setdefault(name, []).append(peak)
        if seconds < best.get(name, (1e9, 0))[0]:
            best[name] = (seconds, peak)
            cpu[name] = LAST_CPU[0]

    for round_no in range(rounds):
        # restic's side of each round goes into a repository of its own, initialised untimed: a
        # closure's backup is that company's first, and ours stores every byte again each round,
        # while a second `restic backup` of the same dump into the same repository stores nothing
        # (its deduplication), which is no like-for-like anchor. That repeat is timed as well and
        # printed apart, for reference (not in the ratios)
        renv = {**env, "RESTIC_REPOSITORY": f"{env['RESTIC_REPOSITORY']}/{database}-round{round_no}"}
        subprocess.run(["restic", "init"], env=renv, check=True, capture_output=True)
        seconds, peak, out = _timed(
            [dereg, "backup", url, "--to", f"s3://bench-dereg/{database}", "--company", "bench"]
            + ["--retention-days", "1"],
            env,
        )
        backup_id = out.strip().splitlines()[-1]
        keep("ours backup", seconds, peak)
        restic_backup = f"pg_dump --format=plain {database} | restic backup --stdin --stdin-filename {database}.sql --quiet"
        seconds, peak, _ = _timed(restic_backup, renv, shell=True)
        keep("restic backup", seconds, peak)
        seconds, _, _ = _timed(restic_backup, renv, shell=True)
        repeats.append(seconds)
        _fresh_database(env, ours_target)
        into = sa.make_url(url).set(database=ours_target).render_as_string(hide_password=False)
        seconds, peak, _ = _timed(
            [
                dereg,
                "restore",
                backup_id,
                "--from",
                f"s3://bench-dereg/{database}",
                "--into",
                into,
                "--verify",
            ],
            env,
        )
        keep("ours restore+verify", seconds, peak)
        _fresh_database(env, restic_target)
        count_sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)
        seconds, peak, _ = _timed(
            f"restic dump latest {database}.sql --quiet | psql -X --quiet --set ON_ERROR_STOP=1 {restic_target} "
            f'> /dev/null && psql -X -At {restic_target} -c "{count_sql}" > /dev/null',
            renv,
            shell=True,
        )
        keep("restic restore+count", seconds, peak)
    schema_ok, counts_ok, _ = pg_equal(env, database, ours_target)
    anchor_ok = pg_equal(env, database, restic_target)[:2]
    for target in (ours_target, restic_target):
        _psql(env, "postgres", f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    for name, (seconds, peak) in best.items():
        print(
            f"  {name:22s} {seconds:7.2f} s   peak RSS {peak / 1024:7.0f} MiB   client CPU {cpu[name]:6.2f} s"
        )
    print(
        f"  EQUAL ours: schema (pg_dump --schema-only) {'yes' if schema_ok else 'NO'}, row counts of "
        f"{len(tables)} tables {'yes' if counts_ok else 'NO'}; restic's: "
        f"{'yes' if anchor_ok[0] else 'NO'}, {'yes' if anchor_ok[1] else 'NO'}"
    )
    print(
        f"  RATIO backup ours/restic = {best['ours backup'][0] / best['restic backup'][0]:.2f}x (goal <= 0.8)"
    )
    print(
        "  RATIO restore ours/restic = "
        f"{best['ours restore+verify'][0] / best['restic restore+count'][0]:.2f}x (goal <= 0.8)"
    )
    print(
        "  RATIO client CPU ours/restic: backup "
        f"{cpu['ours backup'] / max(cpu['restic backup'], 0.01):.2f}x, restore "
        f"{cpu['ours restore+verify'] / max(cpu['restic restore+count'], 0.01):.2f}x (not counted: the "
        "PostgreSQL server and SeaweedFS)"
    )
    print(
        f"  (for reference, not a ratio: restic backup of the same dump again into its round's repository, "
        f"deduplicated: best {min(repeats):.2f} s, median {statistics.median(repeats):.2f} s)"
    )
    if rounds > 1:
        median = {name: statistics.median(times) for name, times in every.items()}
        print(
            f"  RATIO median of {rounds} rounds: backup "
            f"{median['ours backup'] / median['restic backup']:.2f}x "
            f"({median['ours backup']:.2f} s vs {median['restic backup']:.2f} s), restore "
            f"{median['ours restore+verify'] / median['restic restore+count']:.2f}x "
            f"({median['ours restore+verify']:.2f} s vs {median['restic restore+count']:.2f} s)"
        )
    if not (schema_ok and counts_ok):
        raise SystemExit(f"our restore of {database} is not equal to the source")
    return best


def ensure_pagila(env: dict, database: str) -> None:
    """pagila (../shared/realworld/pagila) in `database`, loaded by its own loader unless it is there."""
    try:
        if _psql(env, database, "SELECT count(*) FROM public.rental").strip():
            return
    except subprocess.CalledProcessError:
        pass
    subprocess.run(["bash", str(PAGILA / "load.sh"), database], env=env, check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dereg backup/restore against pg_dump | restic")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--students", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-pagila", action="store_true", help="skip the pagila pack")
    args = parser.parse_args(argv)
    if not shutil.which("restic"):
        raise SystemExit("restic is not installed: apt-get install restic")

    work = Path(tempfile.mkdtemp(prefix="dereg-bench-backup-"))
    server = start_store(work)
    try:
        dereg_and_restic_buckets(server, work)
        prepare_dereg(work)
        env = _env(server, work)
        print(
            f"dereg backup benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        results, urls = {}, {}
        for students in sorted({max(args.students // 10, 1000), args.students}):
            url = (
                args.url  # the given database holds 200,000 students; other sizes get their own
                if students == 200_000
                else args.url.rsplit("/", 1)[0] + f"/{sa.make_url(args.url).database}_{students}"
            )
            ensure(url, students)
            urls[students] = url
            results[students] = pg_compare(env, url, label=f"{students:,} students", rounds=args.rounds)
        small, large = sorted(results)
        if small != large:
            growth = results[large]["ours backup"][1] / results[small]["ours backup"][1]
            print(
                f"\nRATIO peak RSS of our backup, {large:,} / {small:,} students = {growth:.2f}x "
                f"for {large / small:.0f}x the rows (flat: goal <= 1.25x)"
            )
            peaks = [
                statistics.median(PEAKS[sa.make_url(u).database]["ours backup"])
                for u in (urls[large], urls[small])
            ]
            print(
                f"RATIO peak RSS of our backup, median of every round's peak: {peaks[0] / peaks[1]:.2f}x "
                f"({peaks[0] / 1024:.0f} MiB vs {peaks[1] / 1024:.0f} MiB)"
            )
        if not args.no_pagila and PAGILA.is_dir():
            base = sa.make_url(args.url)
            pagila = base.set(database=f"{base.database}_pagila").render_as_string(hide_password=False)
            ensure_pagila(env, sa.make_url(pagila).database)
            results["pagila"] = pg_compare(env, pagila, label="pagila", rounds=args.rounds)
        print(json.dumps({str(k): {n: v[0] for n, v in b.items()} for k, b in results.items()}))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
