"""Build the benchmarks' PostgreSQL database: the demo school at scale.

The schema and the people are the demo seed's (`devtools.demo.seed`: valid resident IDs, UnionPay
cards, mobiles, notes quoting them); attendance is generated in SQL, exactly `attendance_per_student`
lessons per student, so the default 200,000 students give 2,000,000 attendance rows. Rows go in
through COPY, so 200,000 students take well under two minutes.

    python benchmarks/pgdata.py [--url URL] [--students N]

`build(url, students)` creates the database named in `url` if it does not exist, (re)creates the
tables and returns table -> row count. `ensure(url, students)` skips the work when the database
already holds exactly that many students (benchmarks reuse it between runs).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from datetime import date

import sqlalchemy as sa

from devtools.demo.seed import TABLES, _metadata, _number_vouchers, _rows

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/dereg_bench"
CLOSURE_DATE = date(2026, 12, 31)
ATTENDANCE_PER_STUDENT = 10


def _create_database(url: sa.URL) -> None:
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": url.database}
            ).first()
            if not exists:
                conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
    finally:
        admin.dispose()


def _copy(raw_conn, table: sa.Table, rows: list[dict]) -> None:
    names = [c.name for c in table.columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow(["\\N" if row.get(n) is None else row[n] for n in names])
    buffer.seek(0)
    with raw_conn.cursor() as cur:
        cur.copy_expert(
            f"COPY {table.name} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer
        )


def student_count(url: str) -> int | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM students")).scalar_one()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def build(
    url: str = DEFAULT_URL, students: int = 200_000, *, attendance_per_student: int = ATTENDANCE_PER_STUDENT
) -> dict[str, int]:
    """(Re)create the demo school's tables in the database of `url` with `students` students."""
    parsed = sa.make_url(url)
    _create_database(parsed)
    data = _rows(students, 20261122, CLOSURE_DATE)
    _number_vouchers(data["accounting_records"])
    data["attendance"] = []  # generated in SQL below, a fixed number per student
    md = _metadata()
    engine = sa.create_engine(parsed)
    try:
        md.drop_all(engine)
        md.create_all(engine)
        raw = engine.raw_connection()
        try:
            for name in TABLES:
                if data[name]:
                    _copy(raw.driver_connection, md.tables[name], data[name])
            with raw.driver_connection.cursor() as cur:
                cur.execute(
                    "INSERT INTO attendance (id, student_id, course_id, lesson_date, present) "
                    "SELECT (s.id - 1) * %(n)s + k, s.id, 1 + (s.id + k) %% 12, "
                    "DATE '2026-09-01' + (k * 7), (s.id + k) %% 9 <> 0 "
                    "FROM students s CROSS JOIN generate_series(1, %(n)s) AS k",
                    {"n": attendance_per_student},
                )
            raw.commit()
        finally:
            raw.close()
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            counts = {
                name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() for name in TABLES
            }
    finally:
        engine.dispose()
    return counts


def ensure(url: str = DEFAULT_URL, students: int = 200_000) -> dict[str, int]:
    """The database of `url` with exactly `students` students, built only when it is not there yet."""
    if student_count(url) != students:
        return build(url, students)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() for name in TABLES
            }
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--students", type=int, default=200_000)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = build(args.url, args.students)
    print(
        f"built in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
