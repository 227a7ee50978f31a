"""The four-eyes gate: a second person approves the erasure plan in the Airflow UI.

Built on Airflow's human-in-the-loop `ApprovalOperator`. The request shows the plan's summary and
hash; the answer is written to the ledger with the approver's name and the plan hash, which the
erase stage checks. The approver must not be the person who triggered the run.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from dereg.erase.gate import approval_hash
from dereg.erase.review import PLAN_PAGE, approval_lines
from dereg.errors import GateError
from dereg.operators.base import ComplianceMixin, anchored


class ErasureApprovalOperator(ComplianceMixin, ApprovalOperator):
    """Ask a second person to approve the erasure plan.

    :param manifest_path: path of the company manifest (YAML).
    :param approvers: Airflow user names allowed to answer.
    :param approver_ids: user name -> the auth manager's user id, for auth managers whose ids are not
        the names (FAB's are numeric); Airflow matches the responder by id.
    """

    stage = "approve"
    requires = ("plan", "restore_verify", "fulfil_requests")
    template_fields = ("subject", "body", "manifest_path")

    def __init__(
        self,
        *,
        manifest_path: str,
        approvers: list[str],
        approver_ids: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        ids = approver_ids or {}
        super().__init__(
            subject="Approve erasure / 批准删除",
            body="(filled in when the task runs)",
            assigned_users=[{"id": ids.get(a, a), "name": a} for a in approvers],
            **kwargs,
        )
        self.manifest_path = manifest_path
        self.approvers = approvers

    @anchored
    def execute(self, context) -> Any:
        run = self.run_context(context)
        self.check_gates(run)
        plan_hash = approval_hash(run.plans)
        if run.dry_run:
            entry = run.record(self.stage, "succeeded", decision="not asked (dry run)", plan_hash=plan_hash)
            self.log.info("Dry run: approval not requested; plan hash %s", plan_hash)
            return {"decision": "not asked (dry run)", "plan_hash": plan_hash, "ledger_entry": entry.entry_id}
        self.body = self._body(run, plan_hash, plan_lines=approval_lines(run.plans, self._page(run)))
        run.record(self.stage, "requested", plan_hash=plan_hash, approvers=self.approvers)
        self.log.info("Waiting for one of %s to approve plan %s", self.approvers, plan_hash)
        return super().execute(context)

    @staticmethod
    def _page(run):
        """The plan page the plan stage wrote (`plan.html` in the run's output folder), if it is there."""
        page = run.output_dir() / PLAN_PAGE
        return page if page.exists() else None

    @staticmethod
    def _body(run, plan_hash: str, plan_lines: list[str] = ()) -> str:
        lines = [
            f"**{run.manifest.name_zh}** / {run.manifest.name_en} — company `{run.company_id}`",
            "",
            f"- Triggered by / 发起人: `{run.triggered_by}` (you may not approve your own run / 发起人不能自行批准)",
            f"- Reason / 原因: {run.reason}",
            f"- Plan hash / 计划哈希: `{plan_hash}`",
            "",
            "Backups were restored and verified before this request. / 备份已恢复并验证。",
            "",
            "What the plan does, per source and table / 计划（按数据源和表）:",
            "",
            *plan_lines,
            "",
        ]
        return "\n".join(lines)

    @anchored
    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        run = self.run_context(context)
        responder = (
            (event.get("responded_by_user") or {}).get("name")
            or (event.get("responded_by_user") or {}).get("id")
            or "unknown"
        )
        chosen = list(event.get("chosen_options") or [])
        plan_hash = approval_hash(run.plans)
        if responder == run.triggered_by:
            message = (
                f"approval of {run.company_id} run {run.run_id} refused: {responder!r} triggered this run "
                "and cannot also approve it. Ask a second person; nothing was erased."
            )
            run.record(self.stage, "refused", actor=responder, reason=message, plan_hash=plan_hash)
            raise GateError(message)
        if chosen != [self.APPROVE]:
            run.record(self.stage, "rejected", actor=responder, plan_hash=plan_hash, chosen=chosen)
            raise GateError(
                f"{responder!r} rejected the erasure plan of {run.company_id}; nothing was erased. "
                "Review the plan, then trigger a new run."
            )
        entry = run.record(self.stage, "succeeded", actor=responder, decision="approved", plan_hash=plan_hash)
        self.log.info("Plan %s approved by %s", plan_hash, responder)
        super().execute_complete(context, event)
        return {
            "decision": "approved",
            "approver": responder,
            "plan_hash": plan_hash,
            "ledger_entry": entry.entry_id,
        }
