"""The certificate step refuses a run whose rows affected differ from the approved plan (issue 18,
item 2): plan `students: 30` with `rows_affected: students: 35` fails the run, never certifies."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dereg.certify import _check_counts, count_mismatches
from dereg.errors import CertificateError

PLAN = {
    "delete": {"students": 30, "notes": 12},
    "pseudonymize": {"invoices": {"rows": 8, "columns": ["payer"]}},
}


def test_equal_counts_pass():
    assert count_mismatches(PLAN, {"students": 30, "notes": 12, "invoices": 8}) == []


def test_more_rows_affected_than_planned_is_a_mismatch():
    assert count_mismatches(PLAN, {"students": 35, "notes": 12, "invoices": 8}) == [
        "students: plan 30, rows affected 35"
    ]


def test_a_table_erased_but_not_planned_or_planned_but_not_erased_is_a_mismatch():
    wrong = count_mismatches(PLAN, {"students": 30, "invoices": 8, "orders": 4})
    assert wrong == ["notes: plan 12, rows affected None", "orders: plan None, rows affected 4"]


def test_the_certificate_step_fails_the_run_on_a_mismatch():
    run = SimpleNamespace(company_id="acme", run_id="r1")
    stores = [
        {"source_id": "db", "plan": PLAN, "rows_affected": {"students": 35, "notes": 12, "invoices": 8}}
    ]
    with pytest.raises(CertificateError, match=r"db: students: plan 30, rows affected 35"):
        _check_counts(run, stores)
