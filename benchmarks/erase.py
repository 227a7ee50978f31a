"""Erase, purge and verify: Dereg against a hand-written SQL script, on identical PostgreSQL copies.

Both start from the demo school at scale (`benchmarks/pgdata.py`: 200,000 students and 2,000,000
attendance rows by default), cloned with CREATE DATABASE ... TEMPLATE so each side gets the same
bytes. Timed, side by side in one run:

- **ours**: the plan computed from inventory and classification (not timed: it is the approval's
  input), then `execute_plan` as the erase task runs it (the customers' tables, which the plan
  empties, in one TRUNCATE transaction; keyed-hash pseudonymisation of the accounting records in
  batches of UPDATE ... FROM VALUES), `purge` (VACUUM FULL, ANALYZE, CHECKPOINT) and the
  verification (row counts against the plan, pseudonymised columns, dead tuples, and a full scan
  of every remaining value);
- **script**: what a careful administrator would type: the same deletes children first, each
  statement committed on its own, with a plain VACUUM of the emptied children before their parents
  are deleted (the demo's foreign-key columns have no index, so without it every parent row's
  check re-reads millions of dead child rows: at 200,000 students the script then runs for hours),
  an UPDATE replacing the accounting records' names, cards and mobiles by md5 tokens,
  then VACUUM FULL of the same tables and a CHECKPOINT; no verification.

    python -m benchmarks.erase [--students N] [--batch-size B]

Prints both times and the ratio (goal: ours at most 1.5 times the script's). No personal value is
printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

import sqlalchemy as sa

from benchmarks.pgdata import DEFAULT_URL, ensure

SCRIPT = """
DELETE FROM attendance;
DELETE FROM notes;
DELETE FROM contracts;
VACUUM attendance, notes, contracts;
DELETE FROM students;
VACUUM students;
DELETE FROM guardians;
UPDATE accounting_records SET
    payer_name = 'tok_' || left(md5('k' || payer_name), 12),
    payer_bank_card = 'tok_' || left(md5('k' || payer_bank_card), 15),
    payer_mobile = 'tok_' || left(md5('k' || payer_mobile), 16);
VACUUM (FULL, ANALYZE) attendance, notes, contracts, students, guardians, accounting_records;
CHECKPOINT;
"""


def _clone(template_url: str, name: str) -> str:
    url = sa.make_url(template_url)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{url.database}'"
            )
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"')
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop(url: str) -> None:
    parsed = sa.make_url(url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    finally:
        admin.dispose()


def run_script(url: str) -> float:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    started = time.perf_counter()
    try:
        raw = engine.raw_connection()
        try:
            raw.driver_connection.autocommit = True
            with raw.driver_connection.cursor() as cur:
                for statement in filter(None, (s.strip() for s in SCRIPT.split(";"))):
                    cur.execute(statement)
        finally:
            raw.close()
    finally:
        engine.dispose()
    return time.perf_counter() - started


def plan_for(url: str):
    """The erasure plan Dereg's stages would compute for the demo manifest (not timed)."""
    from dereg.classify.engine import classify_source
    from dereg.erase.plan import RetainRule, build_plan
    from dereg.inventory.sql import inventory_source

    engine = sa.create_engine(url)
    try:
        inventory = inventory_source(engine, "school_db")
        classification = classify_source(
            engine, inventory, closure_date=date(2026, 12, 31), subject_table="students"
        )
    finally:
        engine.dispose()
    plan = build_plan(
        company_id="bench",
        inventory=inventory,
        classification=classification,
        subject_table="students",
        retain=[
            RetainRule(table="accounting_records", action="pseudonymize", law="会计档案管理办法", years=30)
        ],
    )
    return plan


def run_ours(url: str, plan, batch_size: int) -> tuple[float, dict]:
    from dereg.classify.engine import full_scan_hits
    from dereg.erase.execute import execute_plan
    from dereg.erase.purge import purge
    from dereg.erase.verify import verify_erasure
    from dereg.inventory.sql import inventory_source

    engine = sa.create_engine(url)
    timings = {}
    try:
        started = time.perf_counter()
        execute_plan(engine, plan, pseudonym_key=b"b" * 32, batch_size=batch_size, truncate_whole_tables=True)
        timings["erase"] = time.perf_counter() - started
        mark = time.perf_counter()
        purge(engine, [t.table for t in plan.tables if t.action != "keep"])
        engine.dispose()
        timings["purge"] = time.perf_counter() - mark
        mark = time.perf_counter()
        after = inventory_source(engine, "school_db")
        verification = verify_erasure(engine, plan, after, full_scan_hits(engine, after))
        timings["verify"] = time.perf_counter() - mark
        if not verification.ok:
            raise SystemExit(f"our erasure did not verify: {verification.problems}")
        return time.perf_counter() - started, timings
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dereg erase+purge+verify against a hand-written SQL script")
    parser.add_argument("--url", default=DEFAULT_URL, help="template database (built if missing)")
    parser.add_argument("--students", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args(argv)
    counts = ensure(args.url, args.students)
    print(f"template {sa.make_url(args.url).database}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    ours_url = _clone(args.url, "dereg_bench_erase_ours")
    script_url = _clone(args.url, "dereg_bench_erase_script")
    try:
        plan = plan_for(ours_url)
        print("plan: " + ", ".join(f"{t.table} {t.action} {t.rows:,}" for t in plan.tables))
        script = run_script(script_url)
        ours, parts = run_ours(ours_url, plan, args.batch_size)
    finally:
        _drop(ours_url)
        _drop(script_url)
    print(f"script (DELETE, UPDATE md5, VACUUM FULL, CHECKPOINT): {script:.1f} s")
    print(
        f"ours (erase {parts['erase']:.1f} s, purge {parts['purge']:.1f} s, verify {parts['verify']:.1f} s): "
        f"{ours:.1f} s"
    )
    print(
        f"RATIO ours/script = {ours / script:.2f}x (goal <= 1.5x: {'met' if ours <= 1.5 * script else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
