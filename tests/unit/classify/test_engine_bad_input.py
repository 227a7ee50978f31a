"""The engine on awkward tables (SQLite): JSON documents, images and binary junk, 10 MB cells, unknown
types, a sample spread over the whole table, full mode, overrides, and a table that cannot be read."""

from __future__ import annotations

import json
import random
from datetime import date

import pytest
import sqlalchemy as sa

from dereg.classify import cn_resident_id
from dereg.classify.engine import apply_overrides, classify_source, full_scan_hits
from dereg.inventory.sql import inventory_source
from dereg.manifest import ColumnOverride

CLOSURE = date(2026, 12, 31)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _id(rng: random.Random) -> str:
    body = f"110105{rng.randrange(1980, 2000)}0{rng.randrange(1, 10)}1{rng.randrange(1, 10)}{rng.randrange(1000):03d}"
    return body + cn_resident_id.calc_check_digit(body + "0")


def _mobile(rng: random.Random) -> str:
    return f"13{rng.randrange(5, 10)}{rng.randrange(10**8):08d}"


@pytest.fixture
def db(tmp_path):
    rng = random.Random(11)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'awkward.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE members (id INTEGER PRIMARY KEY, xm TEXT, profile JSON, photo BLOB, junk BLOB, "
            "essay TEXT, oddity GEOMETRY, late_id VARCHAR(18))"
        )
        conn.exec_driver_sql("CREATE TABLE products (id INTEGER PRIMARY KEY, title TEXT, picture BLOB)")
        rows = []
        for i in range(1, 2001):
            profile = {"guardian": {"name": "王小明", "phone": _mobile(rng)}, "tags": ["piano", i]}
            rows.append(
                {
                    "id": i,
                    "xm": rng.choice(["张伟", "王芳", "李娜", "刘洋"]),
                    "profile": json.dumps(profile, ensure_ascii=False),
                    "photo": PNG,
                    "junk": bytes(rng.randrange(256) for _ in range(64)),
                    "essay": ("长文本" * 200) if i % 500 else ("x" * 10_000_000 + " 联系 " + _mobile(rng)),
                    "oddity": f"POINT({i} {i})",
                    # identifiers only in the last tenth of the table: a first-rows sample misses them
                    "late_id": _id(rng) if i > 1800 else f"ORD{i:015d}",
                }
            )
        conn.execute(
            sa.text(
                "INSERT INTO members VALUES (:id, :xm, :profile, :photo, :junk, :essay, :oddity, :late_id)"
            ),
            rows,
        )
        conn.execute(
            sa.text("INSERT INTO products VALUES (:id, :title, :picture)"),
            [{"id": i, "title": f"course {i}", "picture": PNG} for i in range(1, 51)],
        )
    yield engine
    engine.dispose()


def _by_column(result):
    return {(f.table, f.column): f for f in result.columns}


def test_awkward_values_are_classified_without_leaking(db, caplog):
    inventory = inventory_source(db, "awkward")
    result = classify_source(db, inventory, sample_size=200, closure_date=CLOSURE, subject_table="members")
    found = _by_column(result)
    assert result.problems == []
    # a JSON document: the mobile inside it and the guardian's name under its "name" key
    assert set(found[("members", "profile")].categories) >= {"cn_mobile", "name"}
    # images in a table about people are biometrics; the same images in a product table are not
    assert found[("members", "photo")].categories == ["biometric_face"]
    assert found[("members", "photo")].level == "sensitive"
    assert found[("products", "picture")].categories == []
    # binary junk and an unknown column type are read without error and are not personal
    assert found[("members", "junk")].categories == []
    assert found[("members", "oddity")].categories == []
    assert found[("members", "xm")].categories == ["name"]
    # the sample is spread over the table, so IDs present only in its last rows are still seen
    assert "cn_resident_id" in found[("members", "late_id")].categories
    assert found[("members", "late_id")].values_checked <= 200
    # masked examples only
    for f in result.columns:
        for example in f.masked_examples:
            assert "*" in example
    assert "王小明" not in caplog.text


def test_full_mode_reads_every_value_including_10_mb_cells(db):
    inventory = inventory_source(db, "awkward")
    sample = classify_source(db, inventory, sample_size=100, closure_date=CLOSURE, subject_table=None)
    full = classify_source(
        db, inventory, full=True, sample_size=100, closure_date=CLOSURE, subject_table=None
    )
    essay_sample = _by_column(sample)[("members", "essay")]
    essay_full = _by_column(full)[("members", "essay")]
    # the four 10 MB cells each end with a mobile number; only a full scan reads that far
    assert "cn_mobile" in essay_full.categories and essay_full.matches == 4
    assert essay_full.values_checked == 2000
    assert essay_sample.matches <= essay_full.matches
    assert _by_column(full)[("members", "late_id")].matches == 200
    hits = full_scan_hits(db, inventory)
    assert hits[("members", "late_id")] == 200 and hits[("members", "essay")] == 4
    assert ("products", "title") not in hits


def test_overrides_pin_categories_and_unknown_columns_are_reported(db):
    inventory = inventory_source(db, "awkward")
    result = classify_source(db, inventory, sample_size=100, closure_date=CLOSURE, subject_table=None)
    unmatched = apply_overrides(
        result,
        [
            ColumnOverride("members", "oddity", ["address"], "home location as a map point"),
            ColumnOverride("members", "xm", [], "xm is an internal course code here"),
            ColumnOverride("members", "nope", ["name"], "typo in the manifest"),
        ],
    )
    found = _by_column(result)
    assert unmatched == ["members.nope"]
    assert found[("members", "oddity")].categories == ["address"]
    assert found[("members", "oddity")].override == "home location as a map point"
    assert found[("members", "xm")].categories == [] and found[("members", "xm")].level is None
    assert "manifest override" in found[("members", "xm")].reason


def test_a_table_that_cannot_be_read_is_reported_and_the_rest_classified(db):
    inventory = inventory_source(db, "awkward")
    with db.begin() as conn:
        conn.exec_driver_sql("DROP TABLE products")  # gone between inventory and classification
    result = classify_source(db, inventory, sample_size=100, closure_date=CLOSURE, subject_table="members")
    assert [p["table"] for p in result.problems] == ["products"]
    assert "cannot be read" in result.problems[0]["reason"]
    assert {f.table for f in result.columns} == {"members"}


def test_mobile_numbers_stored_as_integers_are_found(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ints.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE contacts (id INTEGER PRIMARY KEY, tel INTEGER)")
        conn.execute(
            sa.text("INSERT INTO contacts VALUES (:i, :t)"),
            [{"i": i, "t": 13800000000 + i * 7} for i in range(50)],
        )
    inventory = inventory_source(engine, "ints")
    for full in (False, True):
        result = classify_source(engine, inventory, full=full, closure_date=CLOSURE, subject_table=None)
        assert _by_column(result)[("contacts", "tel")].categories == ["cn_mobile"]
    assert full_scan_hits(engine, inventory) == {("contacts", "tel"): 50}
    engine.dispose()


def test_a_full_scan_counts_the_values_of_not_null_and_nullable_columns(tmp_path):
    # a NOT NULL column that is no text is counted as the rows themselves; a nullable one by its
    # values; in a text column, NULL or not, an empty string is no value (as in the sample)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'counts.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE members (id INTEGER PRIMARY KEY, code TEXT NOT NULL, note TEXT, phone TEXT,"
            " points INTEGER NOT NULL)"
        )
        conn.exec_driver_sql(
            "INSERT INTO members (id, code, note, phone, points) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    i,
                    "" if i % 5 == 0 else f"c{i}",
                    None if i % 3 else f"n{i}",
                    None if i % 4 else f"1380013{i:04d}",
                    i,
                )
                for i in range(120)
            ],
        )
    inventory = inventory_source(engine, "counts")
    result = classify_source(
        engine, inventory, sample_size=50, closure_date=date(2026, 1, 1), subject_table="members", full=True
    )
    checked = {c.column: c.values_checked for c in result.columns}
    assert checked == {"id": 120, "code": 96, "note": 40, "phone": 30, "points": 120}
