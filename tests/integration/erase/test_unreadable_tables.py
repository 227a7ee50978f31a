"""Unreadable tables are read where they can be, and never planned as keep silently (issue 18,
item 11): a MariaDB column named with a backtick, and a SQLite value that is not UTF-8."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
import sqlalchemy as sa

from dereg.classify.engine import classify_source
from dereg.erase.plan import build_plan
from dereg.errors import ErasureError
from dereg.inventory.sql import inventory_source

CLOSURE = dt.date(2026, 12, 1)
NAMES = ["张伟", "王秀英", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "周杰", "吴芳"] * 3


def _plan(engine: sa.Engine, **kwargs):
    inventory = inventory_source(engine, "db")
    classification = classify_source(
        engine, inventory, closure_date=CLOSURE, subject_table=None, sample_size=100
    )
    plan = build_plan(
        company_id="acme",
        inventory=inventory,
        classification=classification,
        subject_table="customers",
        retain=[],
        **kwargs,
    )
    return classification, plan


@pytest.mark.integration
def test_a_mariadb_column_named_with_a_backtick_is_read_and_its_names_planned(mariadb_url):
    engine = sa.create_engine(mariadb_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE customers (id int PRIMARY KEY, email varchar(80))")
            conn.exec_driver_sql("CREATE TABLE contacts (id int PRIMARY KEY, `full``name` varchar(40))")
            for i, name in enumerate(NAMES, start=1):
                conn.exec_driver_sql("INSERT INTO customers VALUES (%s, %s)", (i, f"c{i}@example.cn"))
                conn.exec_driver_sql("INSERT INTO contacts VALUES (%s, %s)", (i, name))
        inventory = inventory_source(engine, "db")
        assert [c.name for c in inventory.table("contacts").columns] == ["id", "full`name"]
        classification, plan = _plan(engine, decisions={"contacts": ("erase", "a contact list of the shop")})
        assert classification.problems == []
        assert plan.action("contacts").action == "delete"
        assert plan.action("contacts").columns == ["full`name"]
    finally:
        engine.dispose()


def test_a_sqlite_table_with_a_value_that_is_not_utf8_fails_the_plan_unless_the_manifest_keeps_it(tmp_path):
    path = tmp_path / "source.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT)")
    raw.execute("CREATE TABLE remarks (id INTEGER PRIMARY KEY, body TEXT)")
    raw.executemany("INSERT INTO customers VALUES (?, ?)", [(i, f"c{i}@example.cn") for i in range(1, 20)])
    raw.executemany("INSERT INTO remarks VALUES (?, ?)", [(i, n) for i, n in enumerate(NAMES, start=1)])
    # one value stored as TEXT whose bytes are not UTF-8 (and which holds a name)
    raw.execute("INSERT INTO remarks VALUES (99, CAST(X'57616e67ff58697579696e67' AS TEXT))")
    raw.commit()
    raw.close()
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(ErasureError) as failed:
            _plan(engine)
        message = str(failed.value)
        assert "Xiuying" not in message and "Wang" not in message
        if "could not be read" not in message:  # read after all: its names are undecided, never kept silently
            assert "remarks (" in message and "no link to the subjects" in message
            classification, plan = _plan(engine, decisions={"remarks": ("erase", "remarks of the shop")})
            assert classification.problems == []
            assert plan.action("remarks").action == "delete"
            return
        assert "remarks (" in message and "classify.keep_unreadable" in message
        _, kept = _plan(engine, keep_unreadable={"remarks": "an archive checked by hand, no customers"})
        assert kept.action("remarks").action == "keep"
        assert kept.action("remarks").reason.startswith("could not be read; kept as the manifest decides")
    finally:
        engine.dispose()
