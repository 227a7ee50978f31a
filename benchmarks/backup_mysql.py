"""MariaDB/MySQL backup and restore: Dereg against `mysqldump | restic`, schema included on both sides.

Databases (on the MariaDB server of `--admin-url`, each created for the run and dropped afterwards):

- `mysql_mall_<hex>`: the realworld mall pack (`../shared/realworld/mall`, 76 tables, loaded by
  the pack's own load.sh as tests/integration/realworld does);
- `mysql_rows_<N>_<hex>`: one table `people` of N rows (1,000,000 by default, and a tenth of that
  for the memory comparison): id, two texts, a decimal, a date, a datetime, a 16-byte blob with
  NULLs, a text with tabs, newlines and NULLs, and a secondary index.

Both sides write to one local SeaweedFS S3 gateway started for the run, each in its own process
under GNU time (wall time and peak RSS of the largest process of the pipeline):

- backup: `dereg backup URL --to s3://...` (schema by SHOW CREATE, rows as mysql-text through
  mysqlclient on two snapshot-sharing connections, small tables packed into shared objects, zstd,
  AES-256-GCM, Object Lock, catalog)
  against `mysqldump --single-transaction --routines --triggers DB | restic backup --stdin` into a
  fresh restic repository per round (a closure's backup is the company's first);
- restore: `dereg restore ID --into <fresh database> --verify` (schema rebuilt, rows loaded by
  LOAD DATA LOCAL INFILE, every table read back and its hash compared with the manifest) against
  `restic dump latest | mysql <fresh database>` plus a row count of every table.

Then an independent equality check, without Dereg's code: every table's SHOW CREATE TABLE (its
AUTO_INCREMENT counter left out) and CHECKSUM TABLE, source against each restored copy.

    python -m benchmarks.backup_mysql [--rows N] [--rounds R] [--only mall|rows] [--prefix NAME_]

Needs restic (`apt-get install restic`), mysqldump/mysql and GNU time (`/usr/bin/time`). Prints
ratios; goal: both at most 1.0 times restic's time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from benchmarks.backup_fast import MARIADB_SEED
from benchmarks.store import dereg_and_restic_buckets, prepare_dereg, start_store

ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/"
RESTIC_PASSWORD = "bench-only-restic-password"


def _mall() -> Path:
    """DEREG_REALWORLD/mall, else the nearest shared/realworld/mall above the checkout."""
    if os.environ.get("DEREG_REALWORLD"):
        return Path(os.environ["DEREG_REALWORLD"]) / "mall"
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "realworld" / "mall").is_dir():
            return parent / "shared" / "realworld" / "mall"
    raise SystemExit("the realworld mall pack was not found (set DEREG_REALWORLD)")


PEOPLE = """
CREATE TABLE people (
  id BIGINT PRIMARY KEY, name VARCHAR(60) NOT NULL, email VARCHAR(80), amount DECIMAL(12,2),
  born DATE, seen DATETIME, photo VARBINARY(16), note TEXT, KEY ix_email (email)
) CHARACTER SET utf8mb4
"""
PEOPLE_SEED = MARIADB_SEED  # the same rows as the fast-reader benchmark


def _timed(cmd: list[str] | str, env: dict, shell: bool = False) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB (GNU time: the largest process of the pipeline) and stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        inner = ["bash", "-o", "pipefail", "-c", cmd] if shell else cmd
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", report.name, *inner], env=env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            shown = cmd if isinstance(cmd, str) else " ".join(cmd)
            raise SystemExit(f"{shown} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        peak = int(Path(report.name).read_text().strip().splitlines()[-1])
    return seconds, peak, done.stdout


def _admin(url: str, sql: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def _url(admin: str, database: str) -> str:
    return admin.rstrip("/") + f"/{database}?charset=utf8mb4"


def _independent_view(url: str) -> dict[str, tuple[str, int]]:
    """Per table: SHOW CREATE TABLE without its AUTO_INCREMENT counter, and CHECKSUM TABLE."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            view = {}
            for name in sorted(sa.inspect(conn).get_table_names()):
                quoted = "`" + name.replace("`", "``").replace("%", "%%") + "`"
                create = conn.exec_driver_sql(f"SHOW CREATE TABLE {quoted}").fetchone()[1]
                checksum = conn.exec_driver_sql(f"CHECKSUM TABLE {quoted}").fetchone()[1]
                view[name] = (re.sub(r" AUTO_INCREMENT=\d+", "", create), checksum)
            return view
    finally:
        engine.dispose()


def _compare(source: dict, copy: dict) -> str:
    if source == copy:
        return f"equal ({len(source)} tables: SHOW CREATE TABLE and CHECKSUM TABLE)"
    differ = sorted(n for n in set(source) | set(copy) if source.get(n) != copy.get(n))
    return f"DIFFERENT in {len(differ)} table(s): {', '.join(differ[:10])}"


def _run_database(label: str, admin: str, database: str, rounds: int, env: dict, server) -> dict:
    dereg = str(Path(sys.executable).with_name("dereg"))
    url = _url(admin, database)
    tables = sorted(_independent_view(url))
    source_view = _independent_view(url)
    best: dict[str, tuple[float, int]] = {}
    checks: dict[str, str] = {}
    runs: list[str] = []

    def keep(name: str, seconds: float, peak: int) -> None:
        runs.append(f"    {name:22s} {seconds:7.2f} s   peak RSS {peak / 1024:6.0f} MiB")
        best[name] = min(best.get(name, (1e9, 0)), (seconds, peak))

    for round_no in range(rounds):
        # a repository of its own per round, initialised untimed (see benchmarks/backup.py: the same
        # dump into the same repository again is deduplicated and stores nothing)
        repo_env = {
            **env,
            "RESTIC_REPOSITORY": f"s3:{server.endpoint_url}/bench-restic/{database}-round{round_no}",
        }
        subprocess.run(["restic", "init"], env=repo_env, check=True, capture_output=True)
        seconds, peak, out = _timed(
            [dereg, "backup", url, "--to", f"s3://bench-dereg/{database}", "--company", "bench"]
            + ["--retention-days", "1"],
            env,
        )
        backup_id = out.strip().splitlines()[-1]
        keep("ours backup", seconds, peak)
        seconds, peak, _ = _timed(
            f"mysqldump --single-transaction --routines --triggers {database} | "
            f"restic backup --stdin --stdin-filename {database}.sql --quiet",
            repo_env,
            shell=True,
        )
        keep("restic backup", seconds, peak)

        ours = f"{database}_r_ours"
        _admin(admin, f"DROP DATABASE IF EXISTS `{ours}`")
        _admin(admin, f"CREATE DATABASE `{ours}` CHARACTER SET utf8mb4")
        seconds, peak, _ = _timed(
            [dereg, "restore", backup_id, "--from", f"s3://bench-dereg/{database}"]
            + ["--into", _url(admin, ours), "--verify"],
            env,
        )
        keep("ours restore+verify", seconds, peak)
        checks["ours"] = _compare(source_view, _independent_view(_url(admin, ours)))
        _admin(admin, f"DROP DATABASE IF EXISTS `{ours}`")

        theirs = f"{database}_r_restic"
        _admin(admin, f"DROP DATABASE IF EXISTS `{theirs}`")
        _admin(admin, f"CREATE DATABASE `{theirs}` CHARACTER SET utf8mb4")
        count_sql = " UNION ALL ".join(f"SELECT '{t}', COUNT(*) FROM `{t}`" for t in tables)
        seconds, peak, _ = _timed(
            f"restic dump latest /{database}.sql --quiet | mysql {theirs} && "
            f"mysql -N {theirs} -e {shlex.quote(count_sql)} > /dev/null",
            repo_env,
            shell=True,
        )
        keep("restic restore+count", seconds, peak)
        checks["restic"] = _compare(source_view, _independent_view(_url(admin, theirs)))
        _admin(admin, f"DROP DATABASE IF EXISTS `{theirs}`")

    print("\n".join(runs))
    for name, (seconds, peak) in best.items():
        print(f"  best {name:22s} {seconds:7.2f} s   peak RSS {peak / 1024:6.0f} MiB")
    print(
        f"  RATIO backup ours/restic = {best['ours backup'][0] / best['restic backup'][0]:.2f}x (goal <= 1.0)"
    )
    print(
        "  RATIO restore ours/restic = "
        f"{best['ours restore+verify'][0] / best['restic restore+count'][0]:.2f}x (goal <= 1.0)"
    )
    print(f"  copy restored by dereg:  {checks['ours']}")
    print(f"  copy restored by restic: {checks['restic']}")
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dereg backup/restore against mysqldump | restic")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=["mall", "rows"])
    parser.add_argument(
        "--prefix", default="", help="prepended to the names of the databases made for the run (e.g. NAME_)"
    )
    args = parser.parse_args(argv)
    for tool in ("restic", "mysqldump", "mysql"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (restic: apt-get install restic)")

    work = Path(tempfile.mkdtemp(prefix="dereg-bench-mysql-"))
    server = start_store(work)
    tag = secrets.token_hex(3)
    created: list[str] = []
    admin_url = sa.make_url(args.admin_url)
    try:
        dereg_and_restic_buckets(server, work)
        prepare_dereg(work)
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "DEREG_KEYRING": str(work / "keyring.json"),
            "DEREG_STORE_URL": f"sqlite:///{work / 'compliance.db'}",
            "RESTIC_PASSWORD": RESTIC_PASSWORD,
            "MYSQL_HOST": admin_url.host or "127.0.0.1",
            "MYSQL_TCP_PORT": str(admin_url.port or 3306),
            "USER": admin_url.username or "root",
        }
        print(
            f"dereg MariaDB/MySQL backup benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} CPUs, {args.rounds} round(s)"
        )
        results = {}
        if args.only in (None, "mall"):
            database = f"{args.prefix}mysql_mall_{tag}"
            created.append(database)
            subprocess.run(
                ["bash", str(_mall() / "load.sh"), database],
                env={**env, "PYTHON": sys.executable},
                check=True,
                capture_output=True,
            )
            print(f"\n== mall pack ({database}) ==")
            results["mall"] = _run_database("mall", args.admin_url, database, args.rounds, env, server)
        if args.only in (None, "rows"):
            for rows in sorted({max(args.rows // 10, 1000), args.rows}):
                database = f"{args.prefix}mysql_rows_{rows}_{tag}"
                created.append(database)
                _admin(args.admin_url, f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
                _admin(_url(args.admin_url, database), PEOPLE)
                _admin(_url(args.admin_url, database), PEOPLE_SEED.format(rows=rows))
                print(f"\n== one table of {rows:,} rows ({database}) ==")
                results[rows] = _run_database(str(rows), args.admin_url, database, args.rounds, env, server)
            sizes = sorted(k for k in results if isinstance(k, int))
            if len(sizes) == 2:
                small, large = sizes
                for side in ("ours backup", "ours restore+verify"):
                    growth = results[large][side][1] / results[small][side][1]
                    print(
                        f"\nRATIO peak RSS of {side}, {large:,} / {small:,} rows = {growth:.2f}x "
                        f"for {large / small:.0f}x the rows (flat: goal <= 1.25x)"
                    )
        print(json.dumps({str(k): {n: v[0] for n, v in b.items()} for k, b in results.items()}))
    finally:
        for database in created:
            _admin(args.admin_url, f"DROP DATABASE IF EXISTS `{database}`")
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
