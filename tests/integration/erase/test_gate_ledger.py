"""The erase gate against a real compliance store (issue 18, item 6): what the operator gathers from
the ledger (`RunContext.ledger_facts`) refuses an approval row edited in the store, a later
rejection, and a later failed restore, on SQLite and PostgreSQL stores alike."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from dereg.erase.gate import (
    LEDGER_BROKEN,
    NOT_APPROVED,
    RESTORE_NOT_VERIFIED,
    approval_hash,
    erase_refusals,
)
from dereg.erase.plan import ErasurePlan, TableAction
from dereg.evidence.ledger import Ledger, ledger
from dereg.evidence.store import open_store
from dereg.operators.base import RunContext


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def run(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'compliance.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = open_store(url)
    manifest = SimpleNamespace(company_id="acme", approvers=["checker"], approver_ids={"checker": "7"})
    context = RunContext(
        manifest=manifest,
        run_id="r1",
        triggered_by="ops",
        dry_run=False,
        reason="closing",
        notice_window_days=0,
        store=store,
        ledger=Ledger(store),
    )
    yield context
    store.dispose()


def _plans() -> dict:
    plan = ErasurePlan(
        "acme", "db", "sqlite", "students", [TableAction("students", "delete", 3, [], ["id"], "")]
    )
    plan.plan_hash = plan.compute_hash()
    return {"db": plan}


def _refusals(run: RunContext, plans) -> list[str]:
    facts = run.ledger_facts()
    found = erase_refusals(
        facts.approval,
        plans,
        triggered_by=run.triggered_by,
        pending_requests={},
        approvers=run.approvers(),
        ledger=facts,
    )
    return [r.code for r in found]


def _approved_run(run: RunContext, plans) -> None:
    run.record("restore_verify", "started")
    run.record("restore_verify", "succeeded")
    run.record("approve", "requested", plan_hash=approval_hash(plans))
    run.record("approve", "succeeded", actor="checker", decision="approved", plan_hash=approval_hash(plans))


def test_an_intact_approved_run_passes_the_gate(run):
    plans = _plans()
    _approved_run(run, plans)
    assert _refusals(run, plans) == []


def test_an_approval_row_edited_to_another_actor_is_refused(run):
    plans = _plans()
    _approved_run(run, plans)
    with run.store.begin() as conn:
        conn.execute(
            sa.update(ledger)
            .where(ledger.c.stage == "approve", ledger.c.event == "succeeded")
            .values(actor="7")
        )
    # "7" is an approver's id, so only the broken hash can stop it
    assert _refusals(run, plans) == [LEDGER_BROKEN]


def test_a_later_rejection_and_a_later_failed_restore_win(run):
    plans = _plans()
    _approved_run(run, plans)
    run.record("approve", "rejected", actor="checker", plan_hash=approval_hash(plans))
    run.record("restore_verify", "failed", error="RestoreMismatch")
    assert _refusals(run, plans) == [RESTORE_NOT_VERIFIED, NOT_APPROVED]
