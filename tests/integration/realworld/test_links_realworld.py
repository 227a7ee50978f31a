"""Links found on schemas Dereg did not design, against each pack's truth.json: mall (MariaDB, no
foreign keys: every link inferred from names and values) and pagila (PostgreSQL: declared foreign
keys with ON DELETE, a partitioned payment table whose partitions carry the keys)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dereg.inventory.links import link_report, subject_paths
from dereg.inventory.sql import inventory_source

pytestmark = pytest.mark.integration


def _links(url: str, subject: str):
    engine = sa.create_engine(url)
    try:
        inventory = inventory_source(engine, "pack")
        report = link_report(engine, inventory, subject_table=subject)
    finally:
        engine.dispose()
    inventory.links = report.links
    return inventory, report, subject_paths(inventory, subject)


def _chain(path) -> str:
    """`order_id -> oms_order.id -> member_id` as truth.json writes a chain."""
    first, *rest = path
    text = f"{', '.join(first.columns)} -> {first.ref_table}.{', '.join(first.ref_columns)}"
    return text + "".join(f" -> {', '.join(x.columns)}" for x in rest)


def test_mall_links_every_member_table_by_names_and_values(mall, capsys):
    url, truth = mall
    subject = truth["subject"]["table"]
    inventory, report, paths = _links(url, subject)
    with capsys.disabled():
        print(f"\n[realworld] mall links: {report.summary()}; {len(paths.linked)} tables linked to {subject}")
    assert report.count("declared") == 0 and report.count("inferred") > 0
    with_member_id = {t.name for t in inventory.tables if any(c.name == "member_id" for c in t.columns)}
    assert with_member_id
    for table in with_member_id:
        assert [x.describe() for x in paths.linked[table]] == [f"{table}(member_id) -> {subject}(id)"]
    flash = paths.linked["sms_flash_promotion_log"][0]  # int(11) against bigint(20)
    assert flash.kind == "inferred" and flash.evidence["containment"] == 1.0
    for table, facts in truth["customer_tables"].items():
        link = facts["link"]
        if table == subject or "member_nick_name" in link or "report_member_name" in link:
            continue  # the comment tables hold a nickname only: a decision, not a link
        expected = link.split(";")[0].split(" (")[0]
        if expected.startswith("member_id"):
            expected = f"member_id -> {subject}.id"
        assert _chain(paths.linked[table]) == expected, table
    assert not set(truth["untouched"]) & set(paths.linked), "a business table was chained to the members"
    for link in report.links:  # evidence is counts and names, never a value
        assert set(link.evidence) == {"rule", "non_null", "matched", "containment"}


def test_pagila_declared_keys_partitions_and_on_delete(pagila):
    url, truth = pagila
    subject = truth["subject"]["table"]
    inventory, report, paths = _links(url, subject)
    parent = inventory.table("payment")
    assert parent.partitioned and parent.partition_of is None
    partitions = truth["retain"]["payment"]["partitions"]
    assert {t.name for t in inventory.tables if t.partition_of == "payment"} == set(partitions)
    for table, facts in truth["customer_tables"].items():
        if table in (subject, "address"):
            continue
        assert _chain(paths.linked[table]) == facts["link"], table
    # the parent gets the keys its partitions declare; payment_p2022_07 declares none: inferred
    assert paths.linked["payment"][0].kind == "declared"
    assert paths.linked["payment"][0].evidence["partitions"] == sorted(set(partitions) - {"payment_p2022_07"})
    assert paths.linked["payment_p2022_07"][0].kind == "inferred"
    rental = next(x for x in report.links if x.table == "rental" and x.columns == ["customer_id"])
    assert (rental.kind, rental.on_delete) == ("declared", "RESTRICT")
    assert paths.referenced["address"][0].describe() == "customer(address_id) -> address(address_id)"
    assert not set(truth["untouched"]) & set(paths.linked), "a business table was chained to the customers"
