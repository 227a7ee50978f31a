"""The closure stages, one thin operator each. The work is in plain functions of `dereg`.

An operator names its stage (its task id: the ledger's stage name), the stages it requires, and
whether it is destructive; its `act` builds what the stage function needs from the run (the
manifest, the run's artifacts, how to reach the sources through the Airflow connections, the
keyring) and calls it. Imports of the stage functions stay inside `act`, so parsing a DAG stays
fast. XCom and the ledger get counts and references only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dereg.connections import backup_location, describe_store, object_client, scratch_url
from dereg.operators.base import EXPANDS, ComplianceOperator, RunContext, manifest_digest


def _connectors(run: RunContext):
    """How the stage functions reach this run's sources: through the Airflow connections."""
    from dereg.connectors import Connectors

    # an object source's region: its connection's region_name, else the manifest's backup region
    return Connectors(object_client=lambda source: object_client(source, run.manifest.backup))


class PreflightOperator(ComplianceOperator):
    """Check everything a closure needs before it touches anything; report every problem at once
    (the checks are `dereg.preflight`)."""

    stage = "preflight"

    def act(self, run: RunContext, context) -> dict:
        from dereg.preflight import PreflightFailed, preflight_problems

        m = run.manifest
        problems = preflight_problems(m, run.reason, connectors=_connectors(run), dry_run=run.dry_run)
        if problems:
            raise PreflightFailed(m.company_id, problems)
        self.log.info(
            "Preflight passed for %s (%d source(s), dry_run=%s)", m.company_id, len(m.sources), run.dry_run
        )
        return {
            "reason": run.reason,
            "dry_run": run.dry_run,
            "triggered_by": run.triggered_by,
            "notice_window_days": run.notice_window_days,
            "manifest_sha256": manifest_digest(self.manifest_path),
            "legal_basis": m.legal_basis,
            "approvers": m.approvers,
            "sources": [s.id for s in m.sources],
        }


class InventoryOperator(ComplianceOperator):
    """Reflect every schema, table, column, key and row count of each SQL source, and list the
    objects of each S3 prefix; split the classification into units (one per source, one per large
    table) for the mapped `classify` task."""

    stage = "inventory"
    expands = True
    requires = ("preflight",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.inventory.sources import inventory_sources

        found = inventory_sources(run.manifest, run.artifacts, connectors=_connectors(run), log=self.log)
        return {
            "sources": found["sources"],
            "classification_units": len(found["units"]),
            EXPANDS: found["units"],
        }


class ClassifyOperator(ComplianceOperator):
    """Classify the columns of one unit (a source, or one large table): general or sensitive
    personal information. Mapped over the units the inventory found; `classification_report`
    puts the parts together.

    :param unit: {"source", "kind", "tables", "label", "index"} from the inventory's return value.
    """

    stage = "classify"
    requires = ("inventory",)
    template_fields = ("manifest_path", "unit")

    def __init__(self, *, unit: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.unit = unit or {}

    def act(self, run: RunContext, context) -> dict:
        from dereg.classify.units import classify_unit

        return classify_unit(
            self.unit,
            run.manifest,
            run.artifacts,
            connectors=_connectors(run),
            log=self.log,
            progress=self._progress,
        )


class ClassificationReportOperator(ComplianceOperator):
    """Put the classified units together per source, count minors (and raise their data to
    sensitive), apply the manifest's overrides, and publish the report (JSON and HTML). Fails when a
    table the manifest requires could not be classified."""

    stage = "classification_report"
    requires = ("inventory",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.classify.report import report_classification

        return report_classification(
            run.manifest,
            run.artifacts,
            connectors=_connectors(run),
            output_dir=run.output_dir(),
            log=self.log,
        )


class PlanOperator(ComplianceOperator):
    """Compute the erasure plan of each source and the hash the approver approves."""

    stage = "plan"
    requires = ("classification_report",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.erase.review import write_plan_html
        from dereg.erase.sources import plan_sources

        result = plan_sources(
            run.manifest, run.artifacts, log=self.log, connectors=_connectors(run), dry_run=run.dry_run
        )
        page = write_plan_html(
            run.output_dir(),
            run.plans,
            company_id=run.company_id,
            name_zh=run.manifest.name_zh,
            name_en=run.manifest.name_en,
            run_id=run.run_id,
            plan_hash=result["plan_hash"],
            dry_run=run.dry_run,
        )
        self.log.info("The plan as the approver reads it: %s", page)
        return {**result, "plan_html": str(page)}


class NotifyCustomersOperator(ComplianceOperator):
    """Send one notice per reachable customer (the guardian, for a child), never twice."""

    stage = "notify_customers"
    requires = ("plan",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.keys import Keyring
        from dereg.notify.notices import notify_customers

        return notify_customers(
            run.manifest,
            run.artifacts,
            connectors=_connectors(run),
            pseudonym_key=Keyring.load().pseudonym_key,
            notice_window_days=run.notice_window_days,
            dry_run=run.dry_run,
            log=self.log,
            progress=self._progress,
        )


class WaitForResponsesOperator(ComplianceOperator):
    """Wait, without holding a worker slot, until the notice window has passed."""

    stage = "wait_for_responses"
    requires = ("notify_customers",)

    def act(self, run: RunContext, context) -> dict:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        notified = run.succeeded("notify_customers")
        sent_at = dt.datetime.fromisoformat(notified.ts)
        window_end = sent_at + dt.timedelta(days=run.notice_window_days)
        if run.dry_run or dt.datetime.now(dt.UTC) >= window_end:
            self.log.info(
                "Notice window ended at %s (dry_run=%s); continuing", window_end.isoformat(), run.dry_run
            )
            return {"window_end": window_end.isoformat(), "waited": False}
        self.log.info("Waiting for customer answers until %s", window_end.isoformat())
        self.defer(trigger=DateTimeTrigger(moment=window_end), method_name="resume")
        return {}  # not reached

    def resume(self, context, event=None) -> dict:
        run = self.run_context(context)
        entry = run.record(self.stage, "succeeded", waited=True)
        return {"waited": True, "ledger_entry": entry.entry_id}


class FulfilRequestsOperator(ComplianceOperator):
    """Honour the customers' answers before anything is erased: a copy (encrypted, served by an
    expiring link that is e-mailed to them) or a transfer of their rows to the successor."""

    stage = "fulfil_requests"
    requires = ("wait_for_responses",)
    destructive = True  # sends mail and writes to the successor: nothing in a dry run

    def dry_run_summary(self, run: RunContext, context) -> dict:
        from dereg.notify.fulfil import fulfilment_preview

        return fulfilment_preview(run.store, run.company_id, run.run_id)

    def act(self, run: RunContext, context) -> dict:
        from dereg.keys import Keyring
        from dereg.notify.fulfil import fulfil_requests

        def fulfilled(ref: str, choice: str, detail: dict) -> None:
            run.record(self.stage, "fulfilled", recipient_ref=ref, choice=choice, **detail)

        return fulfil_requests(
            run.manifest,
            run_id=run.run_id,
            store=run.store,
            keyring=Keyring.load(),
            connectors=_connectors(run),
            on_fulfilled=fulfilled,
            log=self.log,
        )


def _backup_place(run: RunContext):
    """The manifest's backup store and the key provider that wraps (and unwraps) the data keys."""
    from dereg.keys_kms import backup_key_provider

    m = run.manifest
    return backup_location(m.backup.conn_id, m.backup), backup_key_provider()


class BackupPrepareOperator(ComplianceOperator):
    """Open the backup of every source: id, data key wrapped into the keyring, catalog row
    `started`, schema sections; split the tables into parts (one per large table, the small ones
    grouped) for the mapped `backup_part` task, as its return value (references only)."""

    stage = "backup_prepare"
    expands = True
    requires = ("classification_report",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.sources import prepare_backups

        location, keyring = _backup_place(run)
        prepared = prepare_backups(
            run.manifest,
            run.artifacts,
            connectors=_connectors(run),
            location=location,
            keyring=keyring,
            log=self.log,
            progress=self._progress,
        )
        return {"sources": prepared["sources"], "parts": len(prepared["parts"]), EXPANDS: prepared["parts"]}


class BackupPartOperator(ComplianceOperator):
    """Write one part of a backup (its tables' chunks, then its sealed part record), or an object
    source's whole backup. Mapped over the parts `backup_prepare` listed; a retry redoes only this
    part. The data key is unwrapped from the keyring here, never passed through XCom.

    :param part: {"source", "kind", "backup_id", "part", "label", "index"} from `backup_prepare`'s return value.
    """

    stage = "backup_part"
    requires = ("backup_prepare",)
    template_fields = ("manifest_path", "part")

    def __init__(self, *, part: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.part = part or {}

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.sources import backup_source_part

        location, keyring = _backup_place(run)
        return backup_source_part(
            run.manifest,
            run.artifacts,
            self.part,
            connectors=_connectors(run),
            location=location,
            keyring=keyring,
            log=self.log,
            progress=self._progress,
        )


class BackupOperator(ComplianceOperator):
    """Complete the AES-256-GCM envelope-encrypted off-site backup of every source: every part
    stored and consistent, then the manifest written last, the locks read back, `complete`."""

    stage = "backup"
    expands = True
    requires = ("backup_prepare",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.sources import finish_backups, restore_units

        location, keyring = _backup_place(run)
        result = finish_backups(
            run.manifest,
            run.artifacts,
            location=location,
            keyring=keyring,
            log=self.log,
            progress=self._progress,
        )
        units = restore_units(result["backups"], result.pop("restore_parts"))
        return {**result, "restore_units": len(units), EXPANDS: units}


class RestoreBackupOperator(ComplianceOperator):
    """Restore one backup of the run, or one part of a backup taken in parts, into a scratch
    database (or folder) and compare it with its manifest. Mapped over `backup`'s return value, so
    the workers share the backups and a large backup's parts.

    :param backup: {"source", "backup_id", "label"}, and for a part {"part", "parts", "tables"},
        from that XCom (references only).
    """

    stage = "restore_backup"
    requires = ("backup",)
    template_fields = ("manifest_path", "backup")

    def __init__(self, *, backup: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backup = backup or {}

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.sources import restore_verify_backup

        location, keyring = _backup_place(run)
        return restore_verify_backup(
            run.manifest,
            run.artifacts,
            self.backup,
            location=location,
            keyring=keyring,
            scratch_url=scratch_url,
            log=self.log,
            progress=self._progress,
        )


class RestoreVerifyOperator(ComplianceOperator):
    """Every backup of the run was restored and verified (by the mapped `restore_backup`): the
    proof `approve` and `erase` require. A backup restored in parts is completed here (foreign keys
    across the parts) and its shared scratch schema dropped, also when a part failed: the DAG runs
    this task once every `restore_backup` has ended, however (trigger rule `all_done`); it refuses
    unless all of them verified. Without a successful `backup` nothing was restored: skipped."""

    stage = "restore_verify"
    requires = ("backup",)

    def execute(self, context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        if self.run_context(context).succeeded("backup") is None:
            raise AirflowSkipException("no successful backup in this run: nothing was restored to verify")
        return super().execute(context)

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.sources import collect_restores

        location, keyring = _backup_place(run)
        return collect_restores(
            run.manifest,
            run.artifacts,
            location=location,
            keyring=keyring,
            scratch_url=scratch_url,
            log=self.log,
        )


class EraseOperator(ComplianceOperator):
    """Run exactly the approved erasure plan: delete customers' rows, pseudonymize kept records."""

    stage = "erase"
    requires = ("restore_verify", "approve")
    destructive = True

    def check_gates(self, run: RunContext) -> None:
        """Beyond the ledger entries: the latest approve and restore_verify outcomes are successes,
        the ledger verifies, approved by one of the manifest's approvers who is not the trigger, same
        plan hash, no open request (`dereg.erase.gate`). A refusal is recorded with every reason."""
        from dereg.erase.gate import EraseRefused, check_erase_gate
        from dereg.notify.answers import open_requests

        super().check_gates(run)
        if run.dry_run:
            return  # a dry run erases nothing, so it needs no approval
        facts = run.ledger_facts()
        try:
            check_erase_gate(
                facts.approval,
                run.plans,
                triggered_by=run.triggered_by,
                pending_requests=open_requests(run.store, run.company_id, run.run_id),
                approvers=run.approvers(),
                ledger=facts,
                company_id=run.company_id,
                run_id=run.run_id,
            )
        except EraseRefused as refused:
            run.record(self.stage, "refused", reason=str(refused))
            raise

    def dry_run_summary(self, run: RunContext, context) -> dict:
        from dereg.erase.sources import erase_preview

        return erase_preview(run.plans, run.manifest, _connectors(run))

    def act(self, run: RunContext, context) -> dict:
        from dereg.erase.sources import backed_up_tables, erase_sources
        from dereg.keys import Keyring

        return erase_sources(
            run.manifest,
            run.plans,
            connectors=_connectors(run),
            pseudonym_key=Keyring.load().pseudonym_key,
            backed_up=backed_up_tables(run.store, run.artifacts.backups()),
            # a retry may find fewer rows only when an earlier try passed the check and began erasing
            resumed=run.has_event(self.stage, "checked"),
            on_checked=lambda rows: run.record(self.stage, "checked", rows=rows),
            record_subject_keys=run.artifacts.put_subject_keys,
            recorded_keys=run.artifacts.subject_keys,
            log=self.log,
            progress=self._progress,
        )


class PurgeOperator(ComplianceOperator):
    """Rewrite touched tables so that deleted rows do not linger in the database files."""

    stage = "purge"
    requires = ("erase",)
    destructive = True

    def act(self, run: RunContext, context) -> dict:
        from dereg.erase.sources import purge_sources

        return purge_sources(run.manifest, run.plans, connectors=_connectors(run), log=self.log)


class VerifyErasureOperator(ComplianceOperator):
    """Scan every value of every table again: nothing personal of the erased customers may remain."""

    stage = "verify_erasure"
    requires = ("erase", "purge")
    destructive = True  # in a dry run nothing was erased, so there is nothing to verify

    def act(self, run: RunContext, context) -> dict:
        from dereg.erase.sources import verify_sources

        keys = {s.id: run.artifacts.subject_keys(s.id) for s in run.manifest.sources}
        return verify_sources(run.manifest, run.plans, connectors=_connectors(run), subject_keys=keys)


class CertificateOperator(ComplianceOperator):
    """Issue the signed certificate of erasure (or, in a dry run, a signed dry-run report)."""

    stage = "certificate"
    requires = ("verify_erasure",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.certify import issue_certificate
        from dereg.keys import Keyring

        return issue_certificate(
            run,
            source_urls={s.id: describe_store(s.conn_id) for s in run.manifest.sources},
            keyring=Keyring.load(),
            log=self.log,
        )


class ManifestProblemsOperator(ComplianceOperator):
    """Stands in for a company whose manifest is broken: fails with every problem listed."""

    stage = "preflight"

    def __init__(self, *, problems: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.problems = problems

    def execute(self, context) -> Any:
        from pathlib import Path

        from dereg import config
        from dereg.errors import ManifestError
        from dereg.evidence.ledger import Ledger
        from dereg.evidence.store import open_store
        from dereg.manifest import company_id_from_path

        error = ManifestError(self.manifest_path, self.problems)
        dag_run = context["dag_run"]
        try:
            Ledger(open_store(config.store_url())).append(
                company_id=company_id_from_path(Path(self.manifest_path)),
                run_id=dag_run.run_id,
                stage=self.stage,
                event="failed",
                actor=getattr(dag_run, "triggering_user_name", None) or "unknown",
                details={"error_type": "ManifestError", "problems": self.problems},
            )
        except Exception:  # noqa: BLE001 - the manifest error is what the operator must see
            self.log.exception("could not record the manifest problems in the ledger")
        raise error


__all__ = [name for name in dir() if name.endswith("Operator") and name != "ComplianceOperator"]
