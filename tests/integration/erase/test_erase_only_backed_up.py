"""Erase acts only on what was backed up and planned (issue 18, item 2).

Customers added after the backup were erased under a valid certificate (plan `students: 30`, rows
affected `students: 35`). Now erase refuses before changing anything when a touched table is not in
the backup, or holds other than the backed-up and planned rows (fewer, more, or as many but other
rows: a row deleted and another added, or a row updated, found by the backup's content hash);
rows that arrive while it runs stop it (under the TRUNCATE lock, or before a batch commits); and
rows affected equal the plan's.

`_backed_up` stands for the catalog's record of a backup taken of the source as it is when called
(rows and content hash, computed by the backup's own reader); the tests at the end take a real
backup to SeaweedFS and read the catalog, as the erase task does.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from dereg.backup.archive import table_digests
from dereg.connectors import Connectors
from dereg.erase.execute import RowsAppeared, execute_plan
from dereg.erase.sources import erase_sources
from dereg.errors import ErasureError

KEY = os.urandom(32)


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg, *args) -> None:
        self.lines.append(msg % args if args else msg)

    warning = info


def _backed_up(school, plan) -> dict[str, dict]:
    """Table -> {"rows", "sha256"}, as a backup taken now records them."""
    digests = table_digests(school.engine, [t.ident for t in plan.tables])
    return {t.table: {"rows": digests[t.ident][0], "sha256": digests[t.ident][1]} for t in plan.tables}


def _erase(school, plan, backed_up, *, resumed=False, on_checked=None):
    manifest = SimpleNamespace(
        company_id="demo_academy",
        sources=[SimpleNamespace(id="school_db", conn_id="school")],
        object_sources=[],
    )
    log = _Log()
    connectors = Connectors(engine=lambda _conn_id: sa.create_engine(school.url))
    return erase_sources(
        manifest,
        {"school_db": plan},
        connectors=connectors,
        pseudonym_key=KEY,
        backed_up={"school_db": backed_up},
        resumed=resumed,
        on_checked=on_checked,
        log=log,
        progress=log.lines.append,
    )


def _add_students(school, ids) -> None:
    with school.engine.begin() as conn:
        for i in ids:
            conn.execute(
                sa.text(
                    "INSERT INTO students (id, name, id_number, birth_date, guardian_id) "
                    "VALUES (:i, :n, NULL, NULL, 1)"
                ),
                {"i": i, "n": f"new student {i}"},
            )


def test_customers_added_after_the_backup_are_not_erased(school):
    plan = school.plan()
    backed_up = _backed_up(school, plan)  # the backup holds what the plan counted
    before = school.dump()
    _add_students(school, range(1001, 1006))  # after the backup
    with pytest.raises(ErasureError) as refused:
        _erase(school, plan, backed_up)
    message = str(refused.value)
    assert "students: 55 rows now, 50 backed up and planned" in message
    assert "Nothing was erased" in message
    assert school.count("students") == 55
    assert {t: rows for t, rows in school.dump().items() if t != "students"} == {
        t: rows for t, rows in before.items() if t != "students"
    }


def test_a_table_missing_from_the_backup_or_backed_up_with_other_rows_is_not_erased(school):
    plan = school.plan()
    backed_up = _backed_up(school, plan)
    del backed_up["notes"]
    backed_up["guardians"]["rows"] = 31
    before = school.dump()
    with pytest.raises(ErasureError) as refused:
        _erase(school, plan, backed_up)
    assert "notes: not in the backup" in str(refused.value)
    assert "guardians: the plan counted 30 rows but the backup holds 31" in str(refused.value)
    assert school.dump() == before


def test_an_unchanged_source_is_erased_and_rows_affected_equal_the_plan(school):
    plan = school.plan()
    checked = []
    backed_up = _backed_up(school, plan)
    erased = _erase(school, plan, backed_up, on_checked=checked.append)
    assert checked == [{"school_db": {t.table: t.rows for t in plan.tables if t.action != "keep"}}]
    assert erased["rows"]["school_db"] == {t.table: t.rows for t in plan.tables if t.action != "keep"}
    assert school.count("students") == 0
    # a resumed try after a complete one: nothing left to change, and the counts still match the plan
    again = _erase(school, plan, backed_up, resumed=True)
    assert again["rows"] == erased["rows"]
    assert set(again["rows_this_try"]["school_db"].values()) == {0}


def test_rows_arriving_during_the_batched_delete_stop_it_before_they_go(school):
    plan = school.plan()
    # erase checked 45 students against the backup; 50 are there when the batches run
    expected = {t.table: t.rows for t in plan.tables if t.action != "keep"} | {"students": 45}
    with pytest.raises(RowsAppeared, match="students: .* rows to erase but 45 were backed up"):
        execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=7, expected_rows=expected)
    assert school.count("students") >= 5  # the batch that went past the checked rows was rolled back


@pytest.mark.integration
def test_rows_arriving_before_the_truncate_lock_leave_every_table_as_it_was(pg_url):
    from tests.integration.erase.school import School

    engine = sa.create_engine(pg_url)
    try:
        school = School(engine, pg_url)
        school.create()
        plan = school.plan()
        before = school.dump()
        expected = {t.table: t.rows for t in plan.tables if t.action != "keep"} | {"students": 45}
        with pytest.raises(RowsAppeared, match="students: 50 rows to erase but 45"):
            execute_plan(
                engine,
                plan,
                pseudonym_key=KEY,
                batch_size=7,
                truncate_whole_tables=True,
                expected_rows=expected,
            )
        assert school.dump() == before  # the TRUNCATE transaction was rolled back whole
    finally:
        engine.dispose()


def test_fewer_rows_than_backed_up_are_refused_unless_an_earlier_try_began_erasing(school):
    plan = school.plan()
    backed_up = _backed_up(school, plan)
    with school.engine.begin() as conn:  # someone removed a lead and added another since the backup
        conn.execute(sa.text("DELETE FROM leads WHERE id IN (1, 2)"))
        conn.execute(sa.text("INSERT INTO leads (id, name, mobile) VALUES (99, 'new lead', NULL)"))
    with pytest.raises(ErasureError, match="leads: 14 rows now, 15 backed up and planned"):
        _erase(school, plan, backed_up)
    assert school.count("leads") == 14 and school.count("students") == 50
