"""Erase, purge and verify the school schema on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dereg.erase.execute import execute_plan, token
from dereg.erase.purge import purge
from dereg.erase.verify import verify_erasure
from tests.integration.erase.school import create_school, reflect_inventory, school_plan

KEY = b"k" * 32
BATCH = 7
DELETED = ["attendance", "contracts", "enrollments", "guardians", "leads", "notes", "students"]


class Crash(RuntimeError):
    pass


def crash_after(n: int):
    """A progress callback that kills the run after the n-th committed batch."""
    seen = []

    def progress(line: str) -> None:
        seen.append(line)
        if len(seen) == n:
            raise Crash(line)

    progress.seen = seen
    return progress


def test_plan_of_the_school(school):
    plan = school.plan()
    actions = {t.table: t.action for t in plan.tables}
    assert sorted(t for t, a in actions.items() if a == "delete") == DELETED
    assert actions["accounting_records"] == "pseudonymize" and actions["courses"] == "keep"
    order = [t.table for t in plan.tables]
    for child, parent in [
        ("students", "guardians"),
        ("contracts", "students"),
        ("attendance", "students"),
        ("notes", "students"),
        ("enrollments", "students"),
        ("contracts", "courses"),
    ]:
        assert order.index(child) < order.index(parent)
    assert plan.action("students").rows == 50 and plan.action("attendance").rows == 120
    assert plan.action("enrollments").key == ["student_id", "course_id"]
    assert plan.plan_hash == school.plan().plan_hash


def test_execute_then_rerun_is_a_noop(school):
    plan = school.plan()
    lines: list[str] = []
    done = execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=BATCH, progress=lines.append)
    assert done == {t: school.sizes[t] for t in [*DELETED, "accounting_records"]}
    for t in DELETED:
        assert school.count(t) == 0, t
    assert school.count("accounting_records") == 40 and school.count("courses") == 4
    assert "students: 50/50 rows deleted (batch 8)" in lines
    assert "accounting_records: 40/40 rows pseudonymized (batch 6)" in lines

    with school.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.text("SELECT * FROM accounting_records"))}
    assert rows[3].payer_name == token(
        KEY, "accounting_records", "payer_name", "tokyo 李"
    )  # "_" is no wildcard
    assert rows[5].payer_name == token(KEY, "accounting_records", "payer_name", "付款人5")
    assert rows[4].payer_name is None  # NULL stays NULL
    assert all(r.payer_mobile.startswith("tok_") and len(r.payer_mobile) == 20 for r in rows.values())
    assert all(r.payer_code is None and r.payer_birth is None for r in rows.values())  # cannot hold a token
    assert rows[5].voucher_no == "V00005" and float(rows[5].amount) == 105.5  # not personal: untouched

    before = school.dump()
    again = execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=BATCH)
    assert set(again.values()) == {0}
    assert school.dump() == before


@pytest.mark.parametrize("crash_at", [2, 14])
def test_crash_between_batches_then_resume_reaches_the_same_end(school, crash_at):
    plan = school.plan()
    execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=BATCH)
    expected = school.dump()

    school.create()  # the same rows again
    progress = crash_after(crash_at)
    with pytest.raises(Crash):
        execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=BATCH, progress=progress)
    assert school.dump() != expected  # the crash left work undone
    resumed = execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=BATCH)
    assert school.dump() == expected
    # nothing done twice: what the crashed run committed is not counted again
    if crash_at == 2:
        assert resumed["accounting_records"] == 40 - 2 * BATCH
    else:  # 6 batches of accounting_records, then 8 of attendance were committed
        assert "attendance: 56/120 rows deleted (batch 8)" == progress.seen[-1]
        assert resumed["accounting_records"] == 0 and resumed["attendance"] == 120 - 56


def test_purge_and_verify(school):
    plan = school.plan()
    execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=BATCH)
    touched = [t.table for t in plan.tables if t.action != "keep"]
    result = purge(school.engine, touched)
    assert result["dialect"] == school.engine.dialect.name
    assert result["tables"] == sorted(touched)
    assert {
        "sqlite": "VACUUM",
        "postgresql": "VACUUM (FULL",
        "mysql": "ALTER TABLE",
        "mariadb": "ALTER TABLE",
    }[result["dialect"]] in result["method"]
    if result["dialect"] == "postgresql":
        assert "then CHECKPOINT" in result["method"]  # the test server's postgres user is a superuser
    school.engine.dispose()  # statistics of the purging backend are flushed when it ends

    verification = verify_erasure(school.engine, plan, school.inventory(), hits={})
    assert verification.ok, verification.problems
    students = verification.tables["students"]
    assert {k: students[k] for k in ("action", "expected_rows", "rows", "ok")} == {
        "action": "delete",
        "expected_rows": 0,
        "rows": 0,
        "ok": True,
    }
    if result["dialect"] == "postgresql":  # no pgstattuple in this database: statistics only, said in a note
        assert any("pgstattuple" in n for n in verification.notes)
    acc = verification.tables["accounting_records"]
    assert acc["rows"] == acc["expected_rows"] == 40 and acc["ok"]
    assert set(acc["values_not_pseudonymized"].values()) == {0}


def test_verify_finds_what_was_left(school):
    plan = school.plan()
    execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=BATCH)
    with school.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO leads (id, name, mobile) VALUES (99, 'Lead 99', '13900001111')"))
        conn.execute(sa.text("UPDATE accounting_records SET payer_mobile = '13900002222' WHERE id = 7"))
        conn.execute(sa.text("DELETE FROM accounting_records WHERE id = 8"))
    verification = verify_erasure(school.engine, plan, school.inventory(), hits={("leads", "mobile"): 1})
    assert not verification.ok
    problems = "\n".join(verification.problems)
    assert "leads: 1 rows left, the plan leaves 0 (it deletes 15 of 15)" in problems
    assert "accounting_records.payer_mobile: 1 values are not pseudonymized" in problems
    assert "accounting_records: 39 rows now, the plan keeps 40" in problems
    assert "leads.mobile: the full scan still finds 1 personal values" in problems
    assert "1390000" not in problems  # counts and names only
    assert verification.tables["leads"]["ok"] is False and verification.tables["students"]["ok"] is True


@pytest.mark.integration
def test_postgresql_dead_tuples_counted_exactly_with_pgstattuple(pg_url):
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        create_school(engine)
        plan = school_plan(engine)
        execute_plan(engine, plan, pseudonym_key=KEY, batch_size=BATCH)
        before = verify_erasure(engine, plan, reflect_inventory(engine), hits={})
        assert not before.ok
        assert before.tables["attendance"]["dead_tuples"] == 120
        assert any(p.startswith("attendance: 120 dead tuples") for p in before.problems)

        purge(engine, [t.table for t in plan.tables if t.action != "keep"])
        after = verify_erasure(engine, plan, reflect_inventory(engine), hits={})
        assert after.ok, after.problems
        assert after.tables["students"]["dead_tuples"] == 0
    finally:
        engine.dispose()


@pytest.mark.integration
def test_postgresql_truncate_path_reaches_the_batched_end_state(pg_url):
    """The erase task's PostgreSQL path: the emptied tables in one TRUNCATE transaction; same rows,
    tokens and counts as the batched path, nothing left for VACUUM, and a rerun changes nothing."""
    from tests.integration.erase.school import School

    engine = sa.create_engine(pg_url)
    school = School(engine, pg_url)
    school.create()
    plan = school.plan()
    execute_plan(engine, plan, pseudonym_key=KEY, batch_size=BATCH)
    expected = school.dump()

    school.create()
    lines: list[str] = []
    done = execute_plan(
        engine, plan, pseudonym_key=KEY, batch_size=BATCH, progress=lines.append, truncate_whole_tables=True
    )
    assert school.dump() == expected
    assert done == {t: school.sizes[t] for t in [*DELETED, "accounting_records"]}
    assert f"students: 50 rows deleted (TRUNCATE of {len(DELETED)} tables in one transaction)" in lines
    with engine.connect() as conn:
        dead = conn.execute(
            sa.text("SELECT coalesce(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE relname = 'students'")
        ).scalar_one()
    assert dead == 0
    again = execute_plan(engine, plan, pseudonym_key=KEY, batch_size=BATCH, truncate_whole_tables=True)
    assert set(again.values()) == {0}

    # a kept table pointing at a customers' table keeps that table (and its parents) out of the TRUNCATE
    school.create()
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE audit (id int primary key, guardian_id int REFERENCES guardians(id))")
        )
    lines.clear()
    execute_plan(
        engine, plan, pseudonym_key=KEY, batch_size=BATCH, progress=lines.append, truncate_whole_tables=True
    )
    assert any(line.startswith("guardians:") and "batch" in line for line in lines)
    assert any(line.startswith("students:") and "TRUNCATE" in line for line in lines)
    assert {t: rows for t, rows in school.dump().items() if t != "audit"} == expected
    engine.dispose()
