"""A same-named table in another schema is another table (issue 18, item 3).

With `archive.orders` referring to the customers and `public.orders` holding nothing personal and
no link, the plan deleted "orders" by bare name: `public.orders` was TRUNCATEd and verified "ok".
Here, on a real PostgreSQL with two schemas, inventory, plan, erase (TRUNCATE and batched paths),
purge and verification all address (schema, table).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dereg.erase.execute import execute_plan
from dereg.erase.plan import build_plan
from dereg.erase.purge import purge
from dereg.erase.verify import verify_erasure
from dereg.inventory.sql import inventory_source
from dereg.model import ClassificationResult, ColumnFinding

pytestmark = pytest.mark.integration

KEY = b"k" * 32


def _create(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS archive CASCADE")
        conn.exec_driver_sql("DROP TABLE IF EXISTS orders, customers CASCADE")
        conn.exec_driver_sql("CREATE TABLE customers (id int PRIMARY KEY, name varchar(40) NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE orders (id int PRIMARY KEY, item varchar(40))")  # no link
        conn.exec_driver_sql("CREATE SCHEMA archive")
        conn.exec_driver_sql(
            "CREATE TABLE archive.orders (id int PRIMARY KEY, customer_id int REFERENCES customers(id), "
            "item varchar(40))"
        )
        conn.exec_driver_sql("INSERT INTO customers SELECT i, 'Customer ' || i FROM generate_series(1, 20) i")
        conn.exec_driver_sql("INSERT INTO orders SELECT i, 'stock item ' || i FROM generate_series(1, 15) i")
        conn.exec_driver_sql(
            "INSERT INTO archive.orders SELECT i, 1 + i %% 20, 'old item' FROM generate_series(1, 30) AS g(i)"
        )


def _plan(engine: sa.Engine):
    inventory = inventory_source(engine, "shop")
    findings = [
        ColumnFinding(
            t.qualified_name,
            c.name,
            ["person_name"] if (t.name, c.name) == ("customers", "name") else [],
            None,
        )
        for t in inventory.tables
        for c in t.columns
    ]
    plan = build_plan(
        company_id="shop",
        inventory=inventory,
        classification=ClassificationResult("shop", findings),
        subject_table="customers",
        retain=[],
    )
    return inventory, plan


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def test_the_inventory_records_the_schema_of_each_table_and_of_each_foreign_key(pg_url):
    engine = sa.create_engine(pg_url)
    try:
        _create(engine)
        inventory, _ = _plan(engine)
        assert {t.qualified_name for t in inventory.tables} == {"customers", "orders", "archive.orders"}
        (fk,) = inventory.table("archive.orders").foreign_keys
        assert (fk.ref_schema, fk.ref_table) == (None, "customers")
        assert inventory.table("orders").schema is None and inventory.table("orders").foreign_keys == []
    finally:
        engine.dispose()


def test_the_plan_deletes_archive_orders_and_keeps_public_orders(pg_url):
    engine = sa.create_engine(pg_url)
    try:
        _create(engine)
        _, plan = _plan(engine)
        actions = {t.table: (t.action, t.schema, t.name) for t in plan.tables}
        assert actions == {
            "customers": ("delete", None, "customers"),
            "archive.orders": ("delete", "archive", "orders"),
            "orders": ("keep", None, "orders"),
        }
        assert plan.summary()["delete"] == {"archive.orders": 30, "customers": 20}
    finally:
        engine.dispose()


@pytest.mark.parametrize("truncate", [True, False], ids=["truncate", "batched"])
def test_erase_purge_and_verify_touch_only_the_planned_schema(pg_url, truncate):
    engine = sa.create_engine(pg_url)
    try:
        _create(engine)
        _, plan = _plan(engine)
        done = execute_plan(engine, plan, pseudonym_key=KEY, batch_size=7, truncate_whole_tables=truncate)
        assert done == {"archive.orders": 30, "customers": 20}
        assert _count(engine, "public.orders") == 15  # untouched
        assert _count(engine, "archive.orders") == 0 and _count(engine, "customers") == 0
        result = purge(engine, [t.ident for t in plan.tables if t.action != "keep"])
        assert result["tables"] == ["archive.orders", "customers"]
        verified = verify_erasure(engine, plan, inventory_source(engine, "shop"), hits={})
        assert verified.ok, verified.problems
        # every table is verified; the one kept has every row
        assert set(verified.tables) == {"archive.orders", "customers", "orders"}
        assert verified.tables["orders"]["rows"] == 15 and verified.tables["orders"]["ok"]
        assert verified.tables["archive.orders"]["rows"] == 0
    finally:
        engine.dispose()
