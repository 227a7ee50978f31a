"""The erase gate: whether the approved plan may run, and if not, every reason why.

Erasure is the one step that cannot be undone, so beyond the ledger entries every stage checks
(`ComplianceOperator.check_gates`), erase refuses unless, for this run:
- a person approved the plan (not rejected, not a dry-run "not asked");
- the plan about to run is the plan that was approved: the hash the approver saw equals the hash
  recomputed from the plans read now, so a re-plan or an edited plan after approval is refused;
- the approver is not the person who triggered the run (four eyes);
- no customer's copy or transfer request is still open (fulfilled or waived with a reason).

`erase_refusals` is a pure function of those facts; `check_erase_gate` raises with all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dereg.errors import GateError

NOT_APPROVED = "not_approved"
PLAN_CHANGED = "plan_changed"
SELF_APPROVED = "self_approved"
REQUESTS_OPEN = "requests_open"


def combined_plan_hash(plan_hashes: Mapping[str, str]) -> str:
    """One hash over every source's erasure plan: what the approver approves."""
    text = "\n".join(f"{sid}:{h}" for sid, h in sorted(plan_hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def approval_hash(plans: Mapping[str, Any]) -> str:
    """The hash shown to the approver: over the hash each plan was written with."""
    return combined_plan_hash({sid: p.plan_hash for sid, p in plans.items()})


def current_plan_hash(plans: Mapping[str, Any]) -> str:
    """The hash of the plans as they are now, recomputed from their content: a plan edited after it
    was written no longer matches what was approved."""
    return combined_plan_hash({sid: p.compute_hash() for sid, p in plans.items()})


@dataclass(frozen=True)
class Approval:
    """What the ledger says about the approval of a run's plan."""

    decision: str | None
    plan_hash: str | None
    approver: str

    @classmethod
    def from_entry(cls, entry: Any) -> Approval | None:
        """From the `approve` stage's `succeeded` ledger entry (None: there is none)."""
        if entry is None:
            return None
        return cls(
            decision=entry.details.get("decision"),
            plan_hash=entry.details.get("plan_hash"),
            approver=entry.actor,
        )


@dataclass(frozen=True)
class Refusal:
    """One reason erase refuses: `code` for programs, `reason` for people."""

    code: str
    reason: str


class EraseRefused(GateError):
    """Erase refused; `refusals` lists every reason."""

    def __init__(self, message: str, refusals: list[Refusal]):
        super().__init__(message)
        self.refusals = refusals


def erase_refusals(
    approval: Approval | None,
    plans: Mapping[str, Any],
    *,
    triggered_by: str,
    pending_requests: Mapping[str, str],
) -> list[Refusal]:
    """Every reason the approved erasure may not run; empty when it may.

    :param approval: the run's approval (None: the ledger holds none).
    :param plans: source id -> the ErasurePlan / ObjectErasurePlan about to run.
    :param triggered_by: the user who triggered the run.
    :param pending_requests: recipient reference -> "copy" or "transfer", requests neither
        fulfilled nor waived.
    """
    refusals = []
    if approval is None or approval.decision != "approved":
        refusals.append(Refusal(NOT_APPROVED, "the plan was not approved"))
    if approval is not None:
        current = current_plan_hash(plans)
        if approval.plan_hash != current:
            refusals.append(
                Refusal(
                    PLAN_CHANGED,
                    f"the approved plan hash {approval.plan_hash} differs from the plan about to run "
                    f"({current}); the plan changed after approval",
                )
            )
        if approval.approver == triggered_by:
            refusals.append(
                Refusal(
                    SELF_APPROVED, f"the approver {approval.approver!r} is the person who triggered the run"
                )
            )
    if pending_requests:
        refusals.append(
            Refusal(
                REQUESTS_OPEN,
                f"{len(pending_requests)} customer request(s) (copy or transfer) are neither fulfilled nor "
                "waived; clear fulfil_requests, or waive each with a reason (dereg answers waive)",
            )
        )
    return refusals


def check_erase_gate(
    approval: Approval | None,
    plans: Mapping[str, Any],
    *,
    triggered_by: str,
    pending_requests: Mapping[str, str],
    company_id: str,
    run_id: str,
) -> None:
    """Raise `EraseRefused` naming every refusal (see `erase_refusals`); return when erase may run."""
    refusals = erase_refusals(approval, plans, triggered_by=triggered_by, pending_requests=pending_requests)
    if refusals:
        raise EraseRefused(
            f"erase refuses for company {company_id}, run {run_id}: "
            + "; ".join(r.reason for r in refusals)
            + ". Nothing was erased. Re-plan and ask a second person to approve.",
            refusals,
        )
