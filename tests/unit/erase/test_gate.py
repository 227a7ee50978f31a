"""The erase gate as a pure function: every refusal, alone and together, and the message erase raises."""

from __future__ import annotations

import copy

import pytest

from dereg.erase.gate import (
    LEDGER_BROKEN,
    NOT_AN_APPROVER,
    NOT_APPROVED,
    PLAN_CHANGED,
    REQUESTS_OPEN,
    RESTORE_NOT_VERIFIED,
    SELF_APPROVED,
    UNDECIDED,
    Approval,
    EraseRefused,
    LedgerFacts,
    approval_hash,
    check_erase_gate,
    combined_plan_hash,
    current_plan_hash,
    erase_refusals,
)
from dereg.erase.objects import ObjectErasurePlan
from dereg.erase.plan import ErasurePlan, TableAction
from dereg.errors import GateError
from dereg.evidence.ledger import LedgerEntry


def _plans() -> dict:
    db = ErasurePlan(
        company_id="acme",
        source_id="school_db",
        dialect="sqlite",
        subject_table="students",
        tables=[
            TableAction("students", "delete", 50, [], ["id"], "subject table"),
            TableAction("invoices", "pseudonymize", 20, ["payer_name"], ["id"], "kept 30 years"),
        ],
    )
    db.plan_hash = db.compute_hash()
    files = ObjectErasurePlan(
        company_id="acme",
        source_id="uploads",
        bucket="acme-uploads",
        prefix="forms/",
        action="delete",
        objects=12,
        bytes=4096,
        personal_groups=["forms (.csv)"],
    )
    files.plan_hash = files.compute_hash()
    return {"school_db": db, "uploads": files}


def _approved(plans, approver="checker") -> Approval:
    return Approval(decision="approved", plan_hash=approval_hash(plans), approver=approver)


def _entry(seq, stage, event, actor="checker", **details) -> LedgerEntry:
    """A ledger entry whose hash is right (as `Ledger.append` writes it)."""
    from dereg.evidence.artifacts import canonical_json
    from dereg.evidence.ledger import entry_hash

    fields = dict(
        seq=seq,
        ts=f"2026-11-23T10:00:{seq:02d}+00:00",
        company_id="acme",
        run_id="r1",
        stage=stage,
        event=event,
        actor=actor,
    )
    digest = entry_hash("p" * 64, **fields, details_json=canonical_json(details))
    return LedgerEntry(**fields, entry_id=f"e{seq}", details=details, prev_hash="p" * 64, hash=digest)


def _facts(*entries, chain_problem=None) -> LedgerFacts:
    """The ledger facts of a run whose restore verified (unless `entries` say otherwise)."""
    restored = _entry(1, "restore_verify", "succeeded", actor="ops")
    return LedgerFacts.gather([restored, *entries], chain_problem is None, chain_problem or "")


APPROVERS = {"checker", "ops"}


def _refusals(approval, plans, *, ledger=None, approvers=APPROVERS, **kwargs):
    return erase_refusals(
        approval, plans, approvers=approvers, ledger=ledger if ledger is not None else _facts(), **kwargs
    )


def _codes(refusals) -> list[str]:
    return [r.code for r in refusals]


def test_an_approved_unchanged_plan_by_a_second_person_with_no_open_request_may_run():
    plans = _plans()
    assert _refusals(_approved(plans), plans, triggered_by="ops", pending_requests={}) == []
    check_erase_gate(
        _approved(plans),
        plans,
        triggered_by="ops",
        pending_requests={},
        approvers=APPROVERS,
        ledger=_facts(),
        company_id="acme",
        run_id="r1",
    )


def test_the_hash_the_approver_sees_is_the_hash_of_the_plans_as_written():
    plans = _plans()
    assert approval_hash(plans) == current_plan_hash(plans)
    # order-independent, and every source counts
    assert combined_plan_hash({"a": "1", "b": "2"}) == combined_plan_hash({"b": "2", "a": "1"})
    assert combined_plan_hash({"a": "1", "b": "2"}) != combined_plan_hash({"a": "1"})


def test_refuses_a_rejected_or_unasked_plan():
    plans = _plans()
    for decision in ("rejected", "not asked (dry run)", None):
        approval = Approval(decision=decision, plan_hash=approval_hash(plans), approver="checker")
        refusals = _refusals(approval, plans, triggered_by="ops", pending_requests={})
        assert _codes(refusals) == [NOT_APPROVED]
        assert refusals[0].reason == "the plan was not approved"


def test_refuses_when_the_ledger_holds_no_approval():
    assert _codes(_refusals(None, _plans(), triggered_by="ops", pending_requests={})) == [NOT_APPROVED]
    assert Approval.from_entry(None) is None


def test_refuses_a_plan_re_made_after_approval():
    plans = _plans()
    approval = _approved(plans)
    replanned = copy.deepcopy(plans)
    replanned["school_db"].tables[0].rows = 51  # a customer added between approval and erase
    replanned["school_db"].plan_hash = replanned["school_db"].compute_hash()
    refusals = _refusals(approval, replanned, triggered_by="ops", pending_requests={})
    assert _codes(refusals) == [PLAN_CHANGED]
    assert approval.plan_hash in refusals[0].reason
    assert current_plan_hash(replanned) in refusals[0].reason
    assert refusals[0].reason.endswith("the plan changed after approval")


def test_refuses_a_plan_edited_after_approval_even_if_its_recorded_hash_was_left_alone():
    plans = _plans()
    approval = _approved(plans)
    edited = copy.deepcopy(plans)
    edited["school_db"].tables[1].action = "delete"  # hash field untouched: the content still counts
    assert _codes(_refusals(approval, edited, triggered_by="ops", pending_requests={})) == [PLAN_CHANGED]


def test_refuses_when_an_object_plan_changed_or_a_source_was_added_after_approval():
    plans = _plans()
    approval = _approved(plans)
    changed = copy.deepcopy(plans)
    changed["uploads"].prefix = ""  # the whole bucket instead of one prefix
    changed["uploads"].plan_hash = changed["uploads"].compute_hash()
    assert _codes(_refusals(approval, changed, triggered_by="ops", pending_requests={})) == [PLAN_CHANGED]
    more = {**copy.deepcopy(plans), "crm": copy.deepcopy(plans["school_db"])}
    assert _codes(_refusals(approval, more, triggered_by="ops", pending_requests={})) == [PLAN_CHANGED]


def test_refuses_a_plan_that_leaves_personal_data_undecided():
    plans = _plans()
    plans["school_db"].undecided = [
        {"table": "site_settings", "columns": {"hotline": ["cn_mobile"]}, "rows": 3}
    ]
    plans["school_db"].plan_hash = plans["school_db"].compute_hash()
    refusals = _refusals(_approved(plans), plans, triggered_by="ops", pending_requests={})
    assert _codes(refusals) == [UNDECIDED]
    assert "school_db.site_settings" in refusals[0].reason and "decisions:" in refusals[0].reason


def test_refuses_when_the_approver_triggered_the_run():
    plans = _plans()
    refusals = _refusals(_approved(plans, approver="ops"), plans, triggered_by="ops", pending_requests={})
    assert _codes(refusals) == [SELF_APPROVED]
    assert refusals[0].reason == "the approver 'ops' is the person who triggered the run"


def test_refuses_while_a_copy_or_transfer_request_is_open():
    plans = _plans()
    pending = {"ref-1": "copy", "ref-2": "transfer"}
    refusals = _refusals(_approved(plans), plans, triggered_by="ops", pending_requests=pending)
    assert _codes(refusals) == [REQUESTS_OPEN]
    assert refusals[0].reason.startswith("2 customer request(s) (copy or transfer) are neither fulfilled nor")
    assert "ref-1" not in refusals[0].reason  # counts, not references


def test_every_refusal_is_named_at_once_in_the_error_erase_raises():
    plans = _plans()
    approval = Approval(decision="rejected", plan_hash="0" * 64, approver="ops")
    with pytest.raises(EraseRefused) as raised:
        check_erase_gate(
            approval,
            plans,
            triggered_by="ops",
            pending_requests={"r": "copy"},
            approvers=APPROVERS,
            ledger=_facts(),
            company_id="acme",
            run_id="r1",
        )
    assert isinstance(raised.value, GateError)
    assert _codes(raised.value.refusals) == [NOT_APPROVED, PLAN_CHANGED, SELF_APPROVED, REQUESTS_OPEN]
    message = str(raised.value)
    assert message.startswith(
        "erase refuses for company acme, run r1: the plan was not approved; the approved"
    )
    assert message.endswith(". Nothing was erased. Re-plan and ask a second person to approve.")


def test_the_approval_is_read_from_the_approve_stage_ledger_entry():
    plans = _plans()
    entry = LedgerEntry(
        seq=7,
        entry_id="e7",
        ts="2026-11-23T10:00:00+00:00",
        company_id="acme",
        run_id="r1",
        stage="approve",
        event="succeeded",
        actor="checker",
        details={"decision": "approved", "plan_hash": approval_hash(plans)},
        prev_hash="",
        hash="",
    )
    assert Approval.from_entry(entry) == _approved(plans)


# --- issue 18, item 6: the gate takes the latest outcome per stage, checks the chain and the approver


def _approval_entry(plans, seq=5, actor="checker"):
    return _entry(
        seq, "approve", "succeeded", actor=actor, decision="approved", plan_hash=approval_hash(plans)
    )


@pytest.mark.parametrize("later", ["rejected", "refused"])
def test_a_later_rejection_or_refusal_wins_over_an_earlier_approval(later):
    plans = _plans()
    facts = _facts(_approval_entry(plans), _entry(6, "approve", later, plan_hash=approval_hash(plans)))
    refusals = _refusals(facts.approval, plans, ledger=facts, triggered_by="ops", pending_requests={})
    assert _codes(refusals) == [NOT_APPROVED]


def test_a_later_failed_restore_verify_wins_over_an_earlier_success():
    plans = _plans()
    facts = _facts(_approval_entry(plans), _entry(7, "restore_verify", "failed", actor="ops"))
    refusals = _refusals(facts.approval, plans, ledger=facts, triggered_by="ops", pending_requests={})
    assert _codes(refusals) == [RESTORE_NOT_VERIFIED]
    assert "'failed'" in refusals[0].reason


def test_refuses_without_any_restore_verify_outcome():
    plans = _plans()
    facts = LedgerFacts.gather([_approval_entry(plans)], True)
    refusals = _refusals(facts.approval, plans, ledger=facts, triggered_by="ops", pending_requests={})
    assert _codes(refusals) == [RESTORE_NOT_VERIFIED]


def test_an_approval_entry_edited_to_another_actor_is_refused():
    import dataclasses

    plans = _plans()
    edited = dataclasses.replace(_approval_entry(plans), actor="ops2")  # hash left as it was
    facts = _facts(edited)
    refusals = _refusals(
        facts.approval, plans, ledger=facts, approvers={"ops2"}, triggered_by="ops", pending_requests={}
    )
    assert _codes(refusals) == [LEDGER_BROKEN]
    assert "e5" in refusals[0].reason


def test_refuses_when_the_whole_chain_does_not_verify():
    plans = _plans()
    facts = _facts(_approval_entry(plans), chain_problem="entry L000003-1234abcd: its content does not match")
    refusals = _refusals(facts.approval, plans, ledger=facts, triggered_by="ops", pending_requests={})
    assert _codes(refusals) == [LEDGER_BROKEN]
    assert "L000003-1234abcd" in refusals[0].reason


def test_refuses_an_approver_who_is_not_in_the_manifest():
    plans = _plans()
    facts = _facts(_approval_entry(plans, actor="mallory"))
    refusals = _refusals(facts.approval, plans, ledger=facts, triggered_by="ops", pending_requests={})
    assert _codes(refusals) == [NOT_AN_APPROVER]
    assert refusals[0].reason == "the approver 'mallory' is not among the manifest's approvers"


def test_the_latest_approval_after_an_earlier_rejection_may_run():
    plans = _plans()
    facts = _facts(_entry(4, "approve", "rejected", plan_hash="x"), _approval_entry(plans, seq=8))
    assert _refusals(facts.approval, plans, ledger=facts, triggered_by="ops", pending_requests={}) == []
