"""On SQLite the deleted bytes must leave the database file itself, not only the table."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from dereg.erase.execute import execute_plan
from dereg.erase.purge import purge
from tests.integration.erase.school import PLANTED_ID, create_school, school_plan


def _file_has(url: str, text: str) -> bool:
    path = Path(sa.engine.make_url(url).database)
    files = [path, *(p for p in path.parent.glob(path.name + "-*"))]  # -journal, -wal
    return any(text.encode() in p.read_bytes() for p in files if p.is_file())


def test_plain_delete_leaves_bytes_that_purge_removes(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    create_school(engine)
    engine.dispose()
    assert _file_has(sqlite_url, PLANTED_ID)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:  # a DELETE without secure_delete: SQLite only unlinks the cells
        conn.exec_driver_sql("PRAGMA secure_delete=OFF")
        for t in ["attendance", "contracts", "notes", "enrollments", "students"]:
            conn.exec_driver_sql(f"DELETE FROM {t}")
    engine.dispose()
    assert _file_has(sqlite_url, PLANTED_ID)  # still readable from the raw file

    engine = sa.create_engine(sqlite_url)
    result = purge(engine, ["students"])
    engine.dispose()
    assert result["dialect"] == "sqlite" and "VACUUM" in result["method"]
    assert not _file_has(sqlite_url, PLANTED_ID)


def test_erase_and_purge_leave_no_planted_id_in_the_file(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    create_school(engine)
    plan = school_plan(engine)
    execute_plan(engine, plan, pseudonym_key=b"k" * 32, batch_size=7)
    purge(engine, [t.table for t in plan.tables if t.action != "keep"])
    engine.dispose()
    assert not _file_has(sqlite_url, PLANTED_ID)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        assert conn.exec_driver_sql("SELECT count(*) FROM accounting_records").scalar() == 40
    engine.dispose()


def test_purge_in_wal_mode_checkpoints_the_log(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    create_school(engine)
    plan = school_plan(engine)
    execute_plan(engine, plan, pseudonym_key=b"k" * 32, batch_size=7)
    result = purge(engine, ["students"])
    assert "WAL checkpointed and truncated" in result["notes"]
    assert not _file_has(sqlite_url, PLANTED_ID)
    engine.dispose()
