"""Notice recipients on pagila (PostgreSQL), a schema nobody designed for Dereg: the customers' own
`customer.email` and `first_name` (the subject table is the notify table), and the same through a
view that refers to the customers; each checked against SQL written here, not Dereg's count."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from dereg.manifest import parse_manifest
from dereg.notify.fulfil import customer_rows
from dereg.notify.recipients import recipients_of
from dereg.preflight import check_source

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[3] / "include" / "companies" / "demo-academy.yaml"
VIEW = "notify_test_customer_contact"


def _source(notify: dict):
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["sources"][0].update(subject_table="customer", notify=notify, retain=[])
    return parse_manifest(data, "pagila.yaml").sources[0]


def _distinct_addresses(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT count(DISTINCT lower(trim(email))) FROM customer WHERE trim(email) ~ '^[^@ ]+@[^@ ]+\\.[^@ ]+$'"
        ).scalar_one()


def test_the_customers_own_columns_reach_every_distinct_address(pagila):
    url, _ = pagila
    engine = sa.create_engine(url)
    try:
        source = _source({"table": "customer", "email_column": "email", "name_column": "first_name"})
        recipients = recipients_of(engine, source)
        expected = _distinct_addresses(engine)
        assert expected == 599
        assert len(recipients.reachable) == expected and recipients.unreachable == []
        assert all(r.children == [] and r.name for r in recipients.reachable)
        assert len({r.contact_id for r in recipients.reachable}) == expected
        assert check_source(0, source, lambda conn_id: sa.create_engine(url)) == []

        # a copy of one customer's data: their row and every row that refers to it
        first = recipients.reachable[0]
        rows = customer_rows(engine, subject_table="customer", notify=source.notify, address=first.email)
        with engine.connect() as conn:
            rentals = conn.execute(
                sa.text("SELECT count(*) FROM rental WHERE customer_id = :id"), {"id": int(first.contact_id)}
            ).scalar_one()
        assert [r["customer_id"] for r in rows["customer"]] == [int(first.contact_id)]
        assert len(rows["rental"]) == rentals > 0
    finally:
        engine.dispose()


def test_a_view_that_refers_to_the_customers_is_a_notify_table(pagila):
    url, _ = pagila
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                f"CREATE VIEW {VIEW} AS SELECT customer_id AS owner, email AS mail, first_name AS given "
                "FROM customer WHERE mod(customer_id, 2) = 0"
            )
        source = _source(
            {"table": VIEW, "subject_column": "owner", "email_column": "mail", "name_column": "given"}
        )
        assert check_source(0, source, lambda conn_id: sa.create_engine(url)) == []
        recipients = recipients_of(engine, source)
        with engine.connect() as conn:
            even, odd = conn.exec_driver_sql(
                "SELECT count(DISTINCT lower(email)) FILTER (WHERE mod(customer_id, 2) = 0), "
                "count(*) FILTER (WHERE mod(customer_id, 2) = 1) FROM customer"
            ).one()
        assert len(recipients.reachable) == even
        # a customer without a row in the view is counted, never silently left out
        assert len(recipients.unreachable) == odd
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {VIEW}")
        engine.dispose()
