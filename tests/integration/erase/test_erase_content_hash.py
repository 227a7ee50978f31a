"""Erase refuses a source whose rows changed since the backup though their count did not (issue 18,
item 2): a real backup to SeaweedFS, the catalog read as the erase task reads it, then the source
changed behind the backup's back. The count check cannot see a customer deleted and another added,
or a row updated; the content hash the backup recorded for each table, computed again by the same
reader, does. Row counts are checked with plain SQL, independently of the code under test.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from dereg.backup.archive import create_backup
from dereg.connections import S3Location
from dereg.connectors import Connectors
from dereg.erase.execute import ContentChanged, execute_plan
from dereg.erase.sources import backed_up_tables, erase_sources
from dereg.errors import ErasureError
from dereg.evidence.store import open_store
from tests.integration.erase.school import SIZES

pytestmark = pytest.mark.integration

KEY = os.urandom(32)


@pytest.fixture
def store(store_url):
    engine = open_store(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def backed_up(school, seaweed, bucket_name, keyring, store):
    """Back up the school source for real; returns the catalog's record as erase reads it."""
    location = S3Location(
        seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket_name, "closures/h"
    )
    engine = sa.create_engine(school.url)
    try:
        record = create_backup(
            engine,
            company_id="demo_academy",
            run_id="run-1",
            source_id="school_db",
            location=location,
            keyring=keyring,
            store=store,
            retention_days=1,
            object_lock=False,
        )
    finally:
        engine.dispose()
    return backed_up_tables(store, {"school_db": {"backup_id": record.backup_id}})


def _erase(school, plan, backed_up, *, resumed=False):
    manifest = SimpleNamespace(
        company_id="demo_academy",
        sources=[SimpleNamespace(id="school_db", conn_id="school")],
        object_sources=[],
    )
    lines: list[str] = []
    log = SimpleNamespace(info=lambda *a: None, warning=lambda *a: None)
    return erase_sources(
        manifest,
        {"school_db": plan},
        connectors=Connectors(engine=lambda _conn_id: sa.create_engine(school.url)),
        pseudonym_key=KEY,
        backed_up=backed_up,
        resumed=resumed,
        log=log,
        progress=lines.append,
    )


def _counts(school) -> dict[str, int]:
    """Rows per table, by plain SQL."""
    with school.engine.connect() as conn:
        return {t: conn.exec_driver_sql(f"SELECT COUNT(*) FROM {t}").scalar_one() for t in SIZES}


def _refused(school, plan, backed_up, *, resumed=False) -> str:
    before, dumped = _counts(school), school.dump()
    with pytest.raises(ErasureError) as refused:
        _erase(school, plan, backed_up, resumed=resumed)
    assert _counts(school) == before and school.dump() == dumped  # nothing erased
    return str(refused.value)


def test_a_customer_deleted_and_another_added_after_the_backup_refuses_the_erase(school, backed_up):
    plan = school.plan()
    with school.engine.begin() as conn:  # student 7 leaves, student 1001 takes over their records
        conn.exec_driver_sql(
            "INSERT INTO students (id, name, id_number, birth_date, guardian_id) "
            "VALUES (1001, 'new student', NULL, NULL, 1)"
        )
        for child in ("contracts", "attendance", "notes", "enrollments"):
            conn.exec_driver_sql(f"UPDATE {child} SET student_id = 1001 WHERE student_id = 7")
        conn.exec_driver_sql("DELETE FROM students WHERE id = 7")
    assert _counts(school) == SIZES  # as many rows everywhere as were backed up and planned

    message = _refused(school, plan, backed_up)
    assert "students: 50 rows now, as many as backed up, but their content differs from the backup" in message
    changed = {line.split(":")[1].strip() for line in message.splitlines() if line.startswith("  - ")}
    assert changed == {"students", "contracts", "attendance", "notes", "enrollments"}
    assert "Nothing was erased. Take a new backup" in message
    assert "new student" not in message and "学生" not in message  # tables named, never a value


@pytest.mark.parametrize(
    ("table", "update"),
    [
        ("students", "UPDATE students SET name = 'renamed' WHERE id = 9"),  # deleted by the plan
        (
            "accounting_records",
            "UPDATE accounting_records SET payer_name = 'x' WHERE id = 5",
        ),  # pseudonymized
    ],
)
def test_a_personal_column_updated_after_the_backup_refuses_the_erase(school, backed_up, table, update):
    plan = school.plan()
    with school.engine.begin() as conn:
        conn.exec_driver_sql(update)
    message = _refused(school, plan, backed_up)
    problems = [line for line in message.splitlines() if line.startswith("  - ")]
    assert problems == [
        f"  - school_db: {table}: {SIZES[table]} rows now, as many as backed up, but their content differs "
        "from the backup (content hash); rows were changed, or some deleted and others added, since the backup"
    ]


def test_a_resumed_try_still_compares_the_tables_the_earlier_try_cannot_have_touched(school, backed_up):
    """A retry after a try that passed the checks (and, e.g., stopped under the TRUNCATE lock) still
    compares every delete table that holds all its backed-up rows."""
    plan = school.plan()
    with school.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE leads SET name = 'changed' WHERE id = 3")
    message = _refused(school, plan, backed_up, resumed=True)
    assert [line for line in message.splitlines() if line.startswith("  - ")] == [
        f"  - school_db: leads: {SIZES['leads']} rows now, as many as backed up, but their content differs "
        "from the backup (content hash); rows were changed, or some deleted and others added, since the backup"
    ]


def test_an_unchanged_source_is_erased_as_planned(school, backed_up):
    plan = school.plan()
    touched = {t.table: t.rows for t in plan.tables if t.action != "keep"}
    erased = _erase(school, plan, backed_up)
    assert erased["rows"]["school_db"] == touched
    after = _counts(school)
    for action in plan.tables:
        kept = action.action in ("keep", "pseudonymize")
        assert after[action.table] == (SIZES[action.table] if kept else 0), action.table


def test_a_change_between_the_check_and_the_truncate_lock_empties_nothing(school, backed_up):
    """PostgreSQL's TRUNCATE path hashes its tables again under its lock, in its transaction."""
    if school.engine.dialect.name != "postgresql":
        pytest.skip("the TRUNCATE path is PostgreSQL's")
    plan = school.plan()
    with school.engine.begin() as conn:  # a writer gets in after erase's check, before the lock
        conn.exec_driver_sql("UPDATE leads SET name = 'changed' WHERE id = 3")
    before = school.dump()
    with pytest.raises(ContentChanged, match="leads: the content differs from the backup"):
        execute_plan(
            school.engine,
            plan,
            pseudonym_key=KEY,
            truncate_whole_tables=True,
            expected_rows={t: v["rows"] for t, v in backed_up["school_db"].items()},
            expected_digests={t: v["sha256"] for t, v in backed_up["school_db"].items()},
        )
    assert school.dump() == before  # the TRUNCATE transaction was rolled back whole
