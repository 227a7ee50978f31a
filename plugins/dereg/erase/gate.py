"""The erase gate: whether the approved plan may run, and if not, every reason why.

Erasure is the one step that cannot be undone, so beyond the ledger entries every stage checks
(`ComplianceOperator.check_gates`), erase refuses unless, for this run:
- the latest outcome of each stage it relies on is a success: the latest `approve` outcome is an
  approval (a later rejection or refusal wins over an earlier approval) and the latest
  `restore_verify` outcome is a success (a later failed restore wins);
- the ledger entries it relies on are intact: each recomputes to its own hash, and the whole
  chain verifies (an edited approval row, e.g. another actor, is refused);
- a person approved the plan (not rejected, not a dry-run "not asked"), and that person is one of
  the manifest's approvers (`approval.approvers`, by name or by auth-manager id);
- the plan about to run is the plan that was approved: the hash the approver saw equals the hash
  recomputed from the plans read now, so a re-plan or an edited plan after approval is refused;
- the approver is not the person who triggered the run (four eyes);
- no customer's copy or transfer request is still open (fulfilled or waived with a reason);
- no plan leaves personal data undecided (a dry run's plan, which lists it instead of stopping).

`erase_refusals` is a pure function of those facts; `check_erase_gate` raises with all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dereg.errors import GateError
from dereg.evidence.artifacts import canonical_json
from dereg.evidence.ledger import entry_hash

NOT_APPROVED = "not_approved"
PLAN_CHANGED = "plan_changed"
SELF_APPROVED = "self_approved"
REQUESTS_OPEN = "requests_open"
NOT_AN_APPROVER = "not_an_approver"
RESTORE_NOT_VERIFIED = "restore_not_verified"
LEDGER_BROKEN = "ledger_broken"
UNDECIDED = "undecided"

#: the stages whose latest outcome erase relies on
RELIED_ON = ("restore_verify", "approve")
#: ledger events that end a stage's attempt; "started", "requested" or "deferred" do not
OUTCOMES = frozenset({"succeeded", "failed", "refused", "rejected"})


def latest_outcomes(entries: Iterable[Any], stages: Iterable[str] = RELIED_ON) -> dict[str, Any]:
    """Stage -> its latest outcome entry among `entries` (one run's ledger entries, in any order);
    a stage with no outcome yet is absent."""
    wanted = set(stages)
    latest: dict[str, Any] = {}
    for entry in entries:
        if entry.stage in wanted and entry.event in OUTCOMES:
            if entry.stage not in latest or entry.seq > latest[entry.stage].seq:
                latest[entry.stage] = entry
    return latest


def entry_intact(entry: Any) -> bool:
    """Whether a ledger entry still hashes to its own `hash` (its fields were not edited)."""
    recomputed = entry_hash(
        entry.prev_hash,
        seq=entry.seq,
        ts=entry.ts,
        company_id=entry.company_id,
        run_id=entry.run_id,
        stage=entry.stage,
        event=entry.event,
        actor=entry.actor,
        details_json=canonical_json(entry.details),
    )
    return recomputed == entry.hash


@dataclass(frozen=True)
class LedgerFacts:
    """What the ledger says beyond the approval: the latest outcome entry of each relied-on stage,
    and the result of verifying the whole chain (None: it verifies)."""

    outcomes: Mapping[str, Any] = field(default_factory=dict)
    chain_problem: str | None = None

    @classmethod
    def gather(cls, entries: Iterable[Any], chain_ok: bool, chain_reason: str = "") -> LedgerFacts:
        return cls(latest_outcomes(entries), None if chain_ok else (chain_reason or "the chain is broken"))

    @property
    def approval(self) -> Approval | None:
        return Approval.from_entry(self.outcomes.get("approve"))


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
        """From the `approve` stage's latest outcome entry (None: there is none). A `rejected`,
        `refused` or `failed` outcome is that decision, whatever an earlier entry said."""
        if entry is None:
            return None
        decision = entry.details.get("decision") if entry.event == "succeeded" else entry.event
        return cls(decision=decision, plan_hash=entry.details.get("plan_hash"), approver=entry.actor)


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
    approvers: Collection[str],
    ledger: LedgerFacts,
) -> list[Refusal]:
    """Every reason the approved erasure may not run; empty when it may.

    :param approval: the run's approval, from the latest `approve` outcome (None: there is none).
    :param plans: source id -> the ErasurePlan / ObjectErasurePlan about to run.
    :param triggered_by: the user who triggered the run.
    :param pending_requests: recipient reference -> "copy" or "transfer", requests neither
        fulfilled nor waived.
    :param approvers: who may approve: the manifest's approvers' names and auth-manager ids.
    :param ledger: the latest outcome of each relied-on stage and the chain's verification.
    """
    refusals = []
    broken = sorted(e.entry_id for e in ledger.outcomes.values() if not entry_intact(e))
    if broken or ledger.chain_problem:
        what = f"entries {', '.join(broken)} do not match their hashes" if broken else ledger.chain_problem
        refusals.append(
            Refusal(
                LEDGER_BROKEN,
                f"the ledger does not verify ({what}); its approval and restore evidence cannot be trusted",
            )
        )
    restore = ledger.outcomes.get("restore_verify")
    if restore is None or restore.event != "succeeded":
        refusals.append(
            Refusal(
                RESTORE_NOT_VERIFIED,
                "the latest restore_verify outcome is "
                + (f"{restore.event!r}" if restore else "missing")
                + ": the backup is not proven to restore",
            )
        )
    if approval is None or approval.decision != "approved":
        refusals.append(Refusal(NOT_APPROVED, "the plan was not approved"))
    if approval is not None and approval.decision == "approved" and approval.approver not in approvers:
        refusals.append(
            Refusal(
                NOT_AN_APPROVER,
                f"the approver {approval.approver!r} is not among the manifest's approvers",
            )
        )
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
    undecided = sorted(
        f"{sid}.{u['table']}" for sid, p in plans.items() for u in (getattr(p, "undecided", None) or [])
    )
    if undecided:
        refusals.append(
            Refusal(
                UNDECIDED,
                f"the plan leaves personal data undecided in {', '.join(undecided)}; decide each in the "
                "manifest (decisions:, or classify.overrides with personal: false) and plan again",
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
    approvers: Collection[str],
    ledger: LedgerFacts,
    company_id: str,
    run_id: str,
) -> None:
    """Raise `EraseRefused` naming every refusal (see `erase_refusals`); return when erase may run."""
    refusals = erase_refusals(
        approval,
        plans,
        triggered_by=triggered_by,
        pending_requests=pending_requests,
        approvers=approvers,
        ledger=ledger,
    )
    if refusals:
        raise EraseRefused(
            f"erase refuses for company {company_id}, run {run_id}: "
            + "; ".join(r.reason for r in refusals)
            + ". Nothing was erased. Re-plan and ask a second person to approve.",
            refusals,
        )
