"""Column conclusions of the engine on a small SQLite table built for each case."""

from __future__ import annotations

import random
from datetime import date

import pytest
import sqlalchemy as sa

from dereg.classify import cn_resident_id
from dereg.classify.engine import (
    MinorCount,
    _minors_of_own_rows,
    _sample_by_keys,
    classify_source,
    count_minors,
    full_scan_hits,
    sample_query,
)
from dereg.inventory.sql import inventory_source

CLOSURE = date(2026, 12, 31)


def _id(rng: random.Random, born: date) -> str:
    body = f"310104{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + cn_resident_id.calc_check_digit(body + "0")


def _mobile(rng: random.Random) -> str:
    return f"139{rng.randrange(10**8):08d}"


@pytest.fixture
def engine(tmp_path):
    rng = random.Random(7)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'case.db'}")
    md = sa.MetaData()
    people = sa.Table(
        "people",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mobile", sa.String(20)),  # the name says mobile, the values say otherwise
        sa.Column("contact", sa.String(20)),  # the name says nothing, the values are mobiles
        sa.Column("order_no", sa.String(18)),  # 18 digits, not IDs
        sa.Column("sfzh", sa.String(18)),
        sa.Column("xm", sa.String(20)),
        sa.Column("xb", sa.String(4)),
        sa.Column("csrq", sa.Date),
        sa.Column("remark", sa.Text),
        sa.Column("empty_email", sa.String(100)),
    )
    orders = sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("people.id")),
        sa.Column("note", sa.String(200)),
    )
    md.create_all(engine)
    rows = []
    for i in range(1, 301):
        born = date(2014 + i % 8, 1 + i % 12, 1 + i % 28)  # ages 4-12 on the closure date
        rows.append(
            {
                "id": i,
                "mobile": f"A-{i:05d}",
                "contact": _mobile(rng),
                "order_no": f"20250315{i:010d}",
                "sfzh": _id(rng, born),
                "xm": "张" + "伟芳明"[i % 3],
                "xb": "男" if i % 2 else "女",
                "csrq": born,
                "remark": f"联系家长 {_mobile(rng)}" if i > 270 else "表现良好，按时完成作业。",
                "empty_email": None,
            }
        )
    with engine.begin() as conn:
        conn.execute(people.insert(), rows)
        conn.execute(orders.insert(), [{"id": i, "person_id": i, "note": "已付款"} for i in range(1, 301)])
    yield engine
    engine.dispose()


def _by_column(result):
    return {(f.table, f.column): f for f in result.columns}


def test_one_finding_per_column_and_values_decide(engine):
    inventory = inventory_source(engine, "case")
    result = classify_source(engine, inventory, sample_size=100, closure_date=CLOSURE, subject_table="people")
    found = _by_column(result)
    assert len(result.columns) == sum(len(t.columns) for t in inventory.tables)

    assert found[("people", "mobile")].categories == []  # name hint contradicted by the values
    assert "contradicted" in found[("people", "mobile")].reason
    assert found[("people", "contact")].categories == ["cn_mobile"]
    assert found[("people", "order_no")].categories == []
    sfzh = found[("people", "sfzh")]
    assert sfzh.categories == ["cn_resident_id"] and sfzh.level == "sensitive"
    assert "valid resident ID numbers" in sfzh.reason and "name hint sfzh" in sfzh.reason
    assert 0 < len(sfzh.masked_examples) <= 3
    assert all("*" * 10 in m for m in sfzh.masked_examples)
    assert found[("people", "xm")].categories == ["name"]
    assert found[("people", "xb")].categories == ["gender"]
    assert "birth_date" in found[("people", "csrq")].categories
    assert found[("people", "remark")].categories == ["cn_mobile"]  # free text with an embedded number
    assert found[("people", "id")].categories == [] and found[("people", "id")].level is None
    assert found[("orders", "note")].categories == []


def test_sample_is_spread_over_the_table(engine):
    inventory = inventory_source(engine, "case")
    result = classify_source(engine, inventory, sample_size=100, closure_date=CLOSURE, subject_table="people")
    remark = _by_column(result)[("people", "remark")]
    # only rows 271-300 hold a number: the first 100 rows would find none, every third key finds 10
    assert remark.values_checked == 100 and remark.matches == 10


def test_minors_raise_subject_and_linked_tables_to_sensitive(engine):
    inventory = inventory_source(engine, "case")
    result = classify_source(engine, inventory, sample_size=500, closure_date=CLOSURE, subject_table="people")
    assert result.subjects == 300 and result.minors == 300
    found = _by_column(result)
    for column in ("xm", "xb", "contact", "remark"):
        assert found[("people", column)].level == "sensitive"
        assert "PIPL Art. 28" in found[("people", column)].reason
    assert "minor" in found[("people", "csrq")].categories


def test_no_minors_when_everyone_is_grown_up(engine):
    inventory = inventory_source(engine, "case")
    result = classify_source(
        engine, inventory, sample_size=500, closure_date=date(2050, 1, 1), subject_table="people"
    )
    assert result.minors == 0 and result.subjects == 300
    assert _by_column(result)[("people", "xm")].level == "general"


def test_full_scan_counts_every_value(engine):
    inventory = inventory_source(engine, "case")
    hits = full_scan_hits(engine, inventory)
    assert hits == {("people", "contact"): 300, ("people", "sfzh"): 300, ("people", "remark"): 30}
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE people SET contact = 'tok_' || substr(hex(randomblob(8)), 1, 16), "
                "sfzh = NULL, remark = '已删除'"
            )
        )
    assert full_scan_hits(engine, inventory) == {}


def test_sample_by_keys_is_the_sample_the_scan_takes(engine):
    inventory = inventory_source(engine, "case")
    people = inventory.table("people")
    with engine.connect() as conn:
        scanned = conn.execute(sample_query(engine, people, 100)).all()
        looked_up = _sample_by_keys(conn, people, 100)
        assert looked_up is not None and [tuple(r) for r in looked_up] == [tuple(r) for r in scanned]
        # fewer multiples of k than the sample's size, none beyond the last key looked up: the same
        for size in (7, 299):
            scanned = conn.execute(sample_query(engine, people, size)).all()
            assert [tuple(r) for r in _sample_by_keys(conn, people, size)] == [tuple(r) for r in scanned]
        # a gap among the multiples of k and no key beyond them: the same rows
        conn.exec_driver_sql("DELETE FROM orders WHERE person_id = 150")
        conn.exec_driver_sql("DELETE FROM people WHERE id = 150")
        scanned = conn.execute(sample_query(engine, people, 100)).all()
        assert len(scanned) == 99 and [tuple(r) for r in _sample_by_keys(conn, people, 100)] == [
            tuple(r) for r in scanned
        ]
        # a gap and a key beyond the last one looked up: the scan would take it, so none
        conn.exec_driver_sql("UPDATE people SET id = 999 WHERE id = 298")
        assert len(conn.execute(sample_query(engine, people, 100)).all()) == 100
        assert _sample_by_keys(conn, people, 100) is None
        # a negative key comes first in the scan's order: none either
        conn.exec_driver_sql("UPDATE people SET id = -3 WHERE id = 299")
        assert _sample_by_keys(conn, people, 50) is None


def test_minors_counted_by_the_worker_are_those_read_afterwards(engine):
    inventory = inventory_source(engine, "case")
    at_once = classify_source(
        engine, inventory, sample_size=500, closure_date=CLOSURE, subject_table="people"
    )
    assert (at_once.subjects, at_once.minors) == (300, 300)
    people = [f for f in at_once.columns if f.table == "people"]
    count = _minors_of_own_rows(engine, inventory.table("people"), people, CLOSURE)
    assert count == MinorCount("people", ("csrq", "sfzh"), 300, 300)
    # read afterwards (no count), and with a count of other columns than count_minors would read
    # (not used: it reads them itself)
    for given in (None, MinorCount("people", ("xm", None), 300, 7)):
        result = classify_source(engine, inventory, sample_size=500, closure_date=CLOSURE, subject_table=None)
        count_minors(engine, inventory, result, "people", CLOSURE, given)
        assert (result.subjects, result.minors) == (300, 300)
    everywhere = classify_source(
        engine, inventory, sample_size=500, closure_date=CLOSURE, subject_table=None, minors_everywhere=True
    )
    assert (everywhere.subjects, everywhere.minors) == (300, 300)


def test_json_findings_come_in_the_same_order_in_every_process():
    """The kinds found under a JSON document's keys are counted in the document's order: a set's
    order (it follows the hash seed) put "name" and "gender" in either order in a report."""
    from tests.unit.classify.seeds import printed_under_seeds

    script = (
        "import json; from dereg.classify.engine import _ColumnStats; s = _ColumnStats(); "
        "[s.add(json.dumps({'name': '张伟', 'gender': '男', 'remark': 'x', 'mobile': '13812345678', 'address': '北京市海淀区中关村大街1号'}, ensure_ascii=False)) for _ in range(3)]; "
        "print(list(s.json_found))"
    )
    seen = printed_under_seeds(script, ("1", "2", "3", "4", "5", "6"))
    assert len(seen) == 1
    assert "name" in next(iter(seen))
