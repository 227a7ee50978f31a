"""A full scan in worker processes (classify/parallel.py) gives what one process gives: the same
hits per column, the same findings in the same order, a table that cannot be read reported the
same way."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from dereg.classify.engine import classify_source, full_scan_hits
from dereg.inventory.sql import inventory_source


def _fill(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (id int PRIMARY KEY, mobile text, remark text)")
        conn.exec_driver_sql("CREATE TABLE orders (id int PRIMARY KEY, card text, note text)")
        conn.exec_driver_sql("CREATE TABLE flags (id int PRIMARY KEY, done boolean)")
        conn.exec_driver_sql(
            "INSERT INTO people SELECT g, '1381234' || lpad(g::text, 4, '0'), "
            "'身份证11010519491231002X 邮箱zhang' || g || '@example.com' FROM generate_series(1, 300) g"
        )
        conn.exec_driver_sql(
            "INSERT INTO orders SELECT g, '6222021234567890128', '订单 2024031512345678' "
            "FROM generate_series(1, 200) g"
        )
        conn.exec_driver_sql("INSERT INTO flags SELECT g, mod(g, 2) = 0 FROM generate_series(1, 50) g")


def test_workers_find_what_one_process_finds(pg_url, monkeypatch):
    engine = sa.create_engine(pg_url)
    try:
        _fill(engine)
        inventory = inventory_source(engine, "s")
        monkeypatch.setenv("DEREG_SCAN_WORKERS", "1")
        alone = full_scan_hits(engine, inventory)
        findings_alone = classify_source(
            engine, inventory, closure_date=dt.date(2026, 1, 1), subject_table=None, full=True
        )
        monkeypatch.setenv("DEREG_SCAN_WORKERS", "2")
        pooled = full_scan_hits(engine, inventory)
        findings_pooled = classify_source(
            engine, inventory, closure_date=dt.date(2026, 1, 1), subject_table=None, full=True
        )
    finally:
        engine.dispose()
    assert alone == pooled
    assert alone[("people", "remark")] == 300 and alone[("orders", "card")] == 200
    assert [f.to_dict() if hasattr(f, "to_dict") else vars(f) for f in findings_alone.columns] == [
        f.to_dict() if hasattr(f, "to_dict") else vars(f) for f in findings_pooled.columns
    ]
    assert findings_alone.problems == findings_pooled.problems == []


def test_workers_started_before_the_inventory_are_used_or_let_go(pg_url, monkeypatch):
    from dereg.classify import parallel
    from dereg.dialects import dialect_for

    engine = sa.create_engine(pg_url)
    try:
        _fill(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        assert dialect_for(engine).estimated_rows(engine) == 550
        monkeypatch.setattr(parallel, "PARALLEL_MIN_ROWS", 100)
        monkeypatch.setenv("DEREG_SCAN_WORKERS", "2")
        parallel.start_early(engine, "dereg.classify.engine")
        assert parallel._url(engine) in parallel._EARLY
        assert parallel._early(engine, take=False)[1] == 2  # started in its thread, not yet taken
        inventory = inventory_source(engine, "s")
        pooled = full_scan_hits(engine, inventory)  # takes the early pool
        assert parallel._url(engine) not in parallel._EARLY
        parallel.start_early(engine, "dereg.classify.engine")
        monkeypatch.setenv("DEREG_SCAN_WORKERS", "1")
        alone = full_scan_hits(engine, inventory)  # one process: the early pool is let go
        assert parallel._url(engine) not in parallel._EARLY
        parallel.stop_early(engine)  # nothing left: no error
    finally:
        engine.dispose()
    assert pooled == alone and alone[("people", "remark")] == 300


def test_workers_reuse_their_connections_across_tables(pg_url, monkeypatch):
    """Each worker keeps a few connections for all its tables: a new one per query (a backend
    started by the server each time) was three per table."""
    engine = sa.create_engine(pg_url)
    database = sa.make_url(pg_url).database
    sessions = sa.text("SELECT sessions FROM pg_stat_database WHERE datname = :d")

    def started() -> int:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            return int(conn.execute(sessions, {"d": database}).scalar_one())

    try:
        with engine.begin() as conn:
            for i in range(8):
                conn.exec_driver_sql(f"CREATE TABLE t{i} (id int PRIMARY KEY, remark text)")
                conn.exec_driver_sql(
                    f"INSERT INTO t{i} SELECT g, '手机1381234' || lpad(g::text, 4, '0') FROM generate_series(1, 100) g"
                )
        inventory = inventory_source(engine, "s")
        monkeypatch.setenv("DEREG_SCAN_WORKERS", "2")
        before = started()
        result = classify_source(
            engine, inventory, closure_date=dt.date(2026, 1, 1), subject_table=None, full=True
        )
        after = started()
    finally:
        engine.dispose()
    assert [f.matches for f in result.columns if f.column == "remark"] == [100] * 8
    # two workers, a few connections each (three new ones per table and worker before)
    assert after - before <= 2 * 5, after - before
