"""The erasure plan on pagila's real schema against its truth.json (read only: the session's pack
database is shared, so nothing is erased here; erase and verify run on hand-made schemas in
tests/integration/erase/test_linked_rows.py). Personal columns are the truth's customer columns, as
a manifest's overrides would leave them; partitions are the truth's, unless inventory finds them."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dereg.erase.execute import kept_row_risks
from dereg.erase.plan import RetainRule, build_plan
from dereg.erase.selection import count_selected
from dereg.inventory.sql import inventory_source
from dereg.model import ClassificationResult, ColumnFinding

pytestmark = pytest.mark.integration

EXPECTED = {"pseudonymize": "pseudonymize", "retain": "keep", "delete": "delete"}


def test_pagila_kept_payments_keep_customers_rentals_and_addresses_pseudonymized(pagila):
    url, truth = pagila
    engine = sa.create_engine(url)
    try:
        inventory = inventory_source(engine, "pagila")
        parts = {t: v["partition_of"] for t, v in truth["customer_tables"].items() if "partition_of" in v}
        for t in inventory.tables:
            if t.partition_of is None and t.name in parts:  # until inventory reads partitions itself
                t.partition_of = parts[t.name]
            if t.name in set(parts.values()):
                t.partitioned, t.row_count = True, 0
        assert {t.name: t.partition_of for t in inventory.tables if t.partition_of} == parts
        findings = [
            ColumnFinding(t.qualified_name, c.name, list(spec.get("categories", [])), None)
            if (spec := truth["truth"].get(t.name, {}).get(c.name, {})).get("whose") == "customer"
            else ColumnFinding(t.qualified_name, c.name, [], None)
            for t in inventory.tables
            for c in t.columns
        ]
        retain = [RetainRule(t, "pseudonymize", "会计档案管理办法", 30) for t in truth["retain"]]
        plan = build_plan(
            company_id="pagila",
            inventory=inventory,
            classification=ClassificationResult("pagila", findings),
            subject_table=truth["subject"]["table"],
            retain=retain,
        )
        count_selected(engine, plan)
        for table, spec in truth["customer_tables"].items():
            assert plan.action(table).action == EXPECTED[spec["expected"]], (table, plan.action(table).reason)
        for table in truth["untouched"]:
            assert plan.action(table).action == "keep", (table, plan.action(table).reason)
        address = plan.action("address")
        assert (address.scope, address.rows) == ("linked", truth["customer_tables"]["address"]["rows"])
        kept = {t.table: t.rows_total for t in plan.tables if t.action != "delete" and not t.partitioned}
        assert {t: kept[t] for t in truth["keep"] if t in kept} == {
            t: n for t, n in truth["keep"].items() if t in kept
        }
        assert plan.summary()["rows_to_delete"] == 0
        assert kept_row_risks(engine, plan) == []
    finally:
        engine.dispose()
