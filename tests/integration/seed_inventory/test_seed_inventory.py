"""The demo school's seed on SQLite, PostgreSQL and MariaDB; inventory and classification of it;
the full scan that proves erasure."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date

import pytest
import sqlalchemy as sa

from dereg.classify import bank_card, cn_mobile, cn_resident_id, email
from dereg.classify.engine import classify_source, full_scan_hits, is_under
from dereg.errors import SourceError
from dereg.inventory.sql import inventory_source
from devtools.demo.seed import TABLES, main, planted_values, seed

CLOSURE = date(2026, 12, 31)
EXPECTED_FKS = {
    ("students", "guardians"),
    ("contracts", "students"),
    ("contracts", "courses"),
    ("attendance", "students"),
    ("attendance", "courses"),
    ("notes", "students"),
}


@pytest.fixture(scope="module")
def school(tmp_path_factory):
    """A seeded SQLite school shared by the read-only tests of this module."""
    url = f"sqlite:///{tmp_path_factory.mktemp('school') / 'demo_academy.db'}"
    counts = seed(url, students=400)
    engine = sa.create_engine(url)
    yield url, engine, counts
    engine.dispose()


@pytest.fixture(scope="module")
def classified(school):
    url, engine, _ = school
    inventory = inventory_source(engine, "school_db")
    result = classify_source(
        engine, inventory, sample_size=2000, closure_date=CLOSURE, subject_table="students"
    )
    return inventory, result, {(f.table, f.column): f for f in result.columns}


def _check_inventory(engine, counts, dialect):
    inventory = inventory_source(engine, "school_db")
    assert inventory.dialect == dialect
    assert sorted(t.name for t in inventory.tables) == sorted(TABLES)
    assert {t.name: t.row_count for t in inventory.tables} == counts
    fks = {(t.name, fk.ref_table) for t in inventory.tables for fk in t.foreign_keys}
    assert fks == EXPECTED_FKS
    students = inventory.table("students")
    assert students.primary_key == ["id"]
    columns = {c.name: c for c in students.columns}
    assert columns["id"].primary_key and not columns["id"].nullable
    assert columns["id_number"].max_length == 18 and "CHAR" in columns["id_number"].type.upper()
    assert columns["health_notes"].nullable
    assert [fk.columns for fk in students.foreign_keys] == [["guardian_id"]]
    accounting = {c.name for c in inventory.table("accounting_records").columns}
    assert {"voucher_no", "payer_name", "payer_bank_card", "payer_mobile", "contract_ref"} <= accounting
    assert inventory.table("accounting_records").foreign_keys == []
    return inventory


@pytest.mark.integration
@pytest.mark.parametrize(
    "backend, dialect", [("sqlite_url", "sqlite"), ("pg_url", "postgresql"), ("mariadb_url", "mysql")]
)
def test_seed_and_inventory_on_each_database(request, backend, dialect):
    url = request.getfixturevalue(backend)
    counts = seed(url, students=60)
    assert counts["students"] == 60 and counts["courses"] == 12
    assert counts["accounting_records"] == counts["contracts"] > 0
    assert counts["attendance"] >= 3 * counts["contracts"]
    engine = sa.create_engine(url)
    try:
        inventory = _check_inventory(engine, counts, dialect)
        # the sampling and streaming SQL of classification runs on every dialect (sample < rows)
        result = classify_source(
            engine, inventory, sample_size=25, closure_date=CLOSURE, subject_table="students"
        )
        personal = {(f.table, f.column) for f in result.columns if f.personal}
        assert {
            ("students", "id_number"),
            ("guardians", "mobile"),
            ("contracts", "payer_bank_card"),
        } <= personal
        assert result.subjects == 60 and result.minors > 0
        hits = full_scan_hits(engine, inventory)
        assert hits[("students", "id_number")] == 60
        # seeding again drops and recreates: same content, no duplicates
        assert seed(url, students=60) == counts
        assert planted_values(url) == planted_values(url)
    finally:
        engine.dispose()


def test_seeded_values_are_valid_and_shaped_like_the_brief(school):
    url, engine, counts = school
    with engine.connect() as conn:
        students = conn.execute(
            sa.text("SELECT birth_date, id_number, guardian_id, gender FROM students")
        ).all()
        guardians = conn.execute(
            sa.text("SELECT id, mobile, email, id_number, relation FROM guardians")
        ).all()
        cards = [r[0] for r in conn.execute(sa.text("SELECT payer_bank_card FROM contracts"))]
        vouchers = [r[0] for r in conn.execute(sa.text("SELECT voucher_no FROM accounting_records"))]
        bodies = [r[0] for r in conn.execute(sa.text("SELECT body FROM notes"))]
    for born, number, _, gender in students:
        born = date.fromisoformat(str(born))
        assert cn_resident_id.is_valid(number) and cn_resident_id.birth_date(number) == born
        assert int(number[16]) % 2 == (1 if gender == "男" else 0)
    minors = sum(is_under(14, date.fromisoformat(str(r[0])), CLOSURE) for r in students)
    assert 0.75 * len(students) < minors < len(students)  # most under 14, some 14-17
    assert all(cn_mobile.is_valid(g[1]) and cn_resident_id.is_valid(g[3]) for g in guardians)
    without_email = sum(1 for g in guardians if not g[2])
    assert 0.03 * len(guardians) < without_email < 0.15 * len(guardians)
    assert all(email.is_valid(g[2]) for g in guardians if g[2])
    children = Counter(r[2] for r in students)
    siblings = sum(1 for n in children.values() if n in (2, 3))
    assert 0.12 * len(guardians) < siblings < 0.30 * len(guardians) and max(children.values()) <= 3
    assert all(bank_card.is_valid(c) and 16 <= len(c) <= 19 for c in cards)
    assert sum(c.startswith("62") for c in cards) > 0.7 * len(cards)
    assert all(re.fullmatch(r"记-20\d{4}-\d{4}", v) for v in vouchers)
    assert len(set(vouchers)) == len(vouchers)
    with_numbers = sum(1 for b in bodies if cn_mobile.find(b) or cn_resident_id.find(b))
    assert 0.08 * len(bodies) < with_numbers < 0.25 * len(bodies)


def test_seed_is_deterministic(tmp_path):
    a, b, c = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db", "c.db"))
    assert seed(a, students=50) == seed(b, students=50)
    assert planted_values(a) == planted_values(b)
    seed(c, students=50, seed=7)
    assert planted_values(c) != planted_values(a)
    planted = planted_values(a)
    assert set(planted) == {"cn_resident_id", "cn_mobile", "email", "bank_card"}
    assert all(planted.values())


def test_classification_of_the_seeded_school(classified):
    inventory, result, found = classified
    assert len(result.columns) == sum(len(t.columns) for t in inventory.tables)

    def cats(table, column):
        return found[(table, column)].categories

    assert cats("students", "id_number") == ["cn_resident_id"]
    assert found[("students", "id_number")].level == "sensitive"
    assert "resident ID" in found[("students", "id_number")].reason
    assert cats("guardians", "id_number") == ["cn_resident_id"]
    assert cats("guardians", "mobile") == ["cn_mobile"]
    assert cats("guardians", "email") == ["email"]
    assert cats("contracts", "payer_bank_card") == ["bank_card"]
    assert found[("contracts", "payer_bank_card")].level == "sensitive"
    assert set(cats("notes", "body")) == {"cn_mobile", "cn_resident_id"}
    assert "free text" in found[("notes", "body")].reason
    assert cats("accounting_records", "payer_bank_card") == ["bank_card"]
    assert cats("accounting_records", "payer_mobile") == ["cn_mobile"]
    assert cats("accounting_records", "payer_name") == ["name"]
    assert cats("students", "name") == ["name"] and cats("guardians", "name") == ["name"]
    assert "gender" in cats("students", "gender") and "birth_date" in cats("students", "birth_date")
    assert cats("students", "health_notes") == ["health"]
    assert cats("guardians", "address") == ["address"]
    for table, column in (
        ("courses", "title"),
        ("courses", "price"),
        ("accounting_records", "voucher_no"),
        ("accounting_records", "amount"),
        ("accounting_records", "booked_on"),
        ("accounting_records", "contract_ref"),
        ("accounting_records", "summary"),
        ("attendance", "present"),
        ("students", "guardian_id"),
    ):
        assert cats(table, column) == [] and found[(table, column)].level is None, (table, column)
    assert not any(f.personal for f in result.columns if f.table == "courses")


def test_minors_make_child_data_sensitive(classified):
    _, result, found = classified
    assert result.subjects == 400 and 0 < result.minors < 400
    for column in ("name", "gender", "birth_date", "id_number", "health_notes"):
        assert found[("students", column)].level == "sensitive", column
        assert "PIPL Art. 28" in found[("students", column)].reason
    assert found[("notes", "body")].level == "sensitive"  # notes has a foreign key to students
    assert found[("guardians", "mobile")].level == "general"  # guardians are adults, linked the other way


def test_findings_hold_no_raw_values(school, classified):
    url, _, _ = school
    _, result, _ = classified
    text = str(result.to_dict())
    planted = planted_values(url)
    assert not [v for values in planted.values() for v in values if v in text]
    examples = [m for f in result.columns for m in f.masked_examples]
    assert examples and all("*" in m or m in ("[health term]", "[image]") for m in examples)
    assert all(len(f.masked_examples) <= 3 for f in result.columns)


def test_full_scan_finds_identifiers_and_nothing_after_erasure(tmp_path):
    url = f"sqlite:///{tmp_path / 'erase.db'}"
    counts = seed(url, students=120)
    engine = sa.create_engine(url)
    try:
        inventory = inventory_source(engine, "school_db")
        hits = full_scan_hits(engine, inventory)
        assert hits[("students", "id_number")] == counts["students"]
        assert hits[("accounting_records", "payer_bank_card")] == counts["accounting_records"]
        assert hits[("notes", "body")] > 0
        assert not {("accounting_records", "voucher_no"), ("accounting_records", "summary")} & set(hits)
        with engine.begin() as conn:
            for table in ("attendance", "notes", "contracts", "students", "guardians"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
            conn.execute(
                sa.text(
                    "UPDATE accounting_records SET payer_name = 'tok_' || lower(hex(randomblob(8))), "
                    "payer_bank_card = 'tok_' || lower(hex(randomblob(8))), "
                    "payer_mobile = 'tok_' || lower(hex(randomblob(8)))"
                )
            )
        after = inventory_source(engine, "school_db")
        assert after.table("accounting_records").row_count == counts["accounting_records"]
        assert full_scan_hits(engine, after) == {}
    finally:
        engine.dispose()


def test_unreachable_database_names_source_and_host_without_password():
    engine = sa.create_engine(
        "postgresql+psycopg2://dereg:S3cretPassw0rd@127.0.0.1:9/school", connect_args={"connect_timeout": 2}
    )
    with pytest.raises(SourceError) as caught:
        inventory_source(engine, "school_db")
    message = str(caught.value)
    assert "school_db" in message and "127.0.0.1" in message
    assert "S3cretPassw0rd" not in message


def test_missing_sqlite_file_is_a_source_error_not_an_empty_source(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'nowhere.db'}")
    with pytest.raises(SourceError, match="school_db.*does not exist"):
        inventory_source(engine, "school_db")
    assert not (tmp_path / "nowhere.db").exists()


def test_cli_prints_counts_only(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["--url", url, "--students", "30", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "students: 30" in out and "guardians:" in out
    planted = planted_values(url)
    assert not [v for values in planted.values() for v in values if v in out]


def test_cli_default_url_is_in_the_state_folder(capsys):
    from dereg.config import state_dir

    assert main(["--students", "10"]) == 0
    assert (state_dir() / "demo" / "demo_academy.db").is_file()
    assert "students: 10" in capsys.readouterr().out


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["pg_url", "mariadb_url"])
def test_inventory_counted_apart_and_reflected_in_bulk_is_the_one_made_table_by_table(
    request, backend, monkeypatch
):
    from dereg.inventory import sql

    url = request.getfixturevalue(backend)
    seed(url, students=30)
    engine = sa.create_engine(url)
    try:
        apart = inventory_source(engine, "s")
        assert apart.table("students").row_count == 30
        # counts on the inventory's own connection, reflection by the inspector's per-table methods
        monkeypatch.setattr(sql._Counts, "get", lambda self, schema, name: None)
        monkeypatch.setattr(
            sql._Bulk,
            "_one",
            lambda self, kind, name, schema: getattr(self._inspector, f"get_{kind}")(name, schema=schema),
        )
        assert inventory_source(engine, "s") == apart
    finally:
        engine.dispose()
