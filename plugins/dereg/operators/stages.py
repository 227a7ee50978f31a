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

from dereg.errors import DeregError
from dereg.operators.base import ComplianceOperator, RunContext, manifest_digest
from dereg.operators.connections import (
    connection_exists,
    get_connection,
    s3_location,
    scratch_url,
    source_engine,
)


def _connectors(run: RunContext):
    """How the stage functions reach this run's sources: through the Airflow connections."""
    from dereg.connectors import Connectors

    return Connectors(engine=source_engine, object_client=lambda source: _object_client(run, source))


def _object_client(run: RunContext, source):
    return s3_location(source.conn_id, run.manifest.backup).client()


class PreflightOperator(ComplianceOperator):
    """Check everything a closure needs before it touches anything; report every problem at once."""

    stage = "preflight"

    def act(self, run: RunContext, context) -> dict:
        from dereg.keys import Keyring
        from dereg.manifest import connection_problems

        m = run.manifest
        problems = connection_problems(m, connection_exists)
        if len(run.reason.strip()) < 5:
            problems.append(
                "params.reason: say why this closure runs (at least 5 characters); it goes in the ledger"
            )
        try:
            Keyring.load()
        except DeregError as exc:
            problems.append(f"keyring: {exc}")
        missing = {conn_id for _, conn_id in m.connection_ids() if not connection_exists(conn_id)}
        for i, source in enumerate(m.sources):
            if source.conn_id in missing:
                continue
            problems.extend(self._check_source(i, source))
        if m.backup.conn_id not in missing:
            problems.extend(self._check_s3(m))
        if m.smtp_conn_id not in missing:
            problems.extend(self._check_smtp(m.smtp_conn_id))
        if problems:
            raise DeregError(
                f"preflight of company {m.company_id} found {len(problems)} problem(s); nothing was done:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
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

    @staticmethod
    def _check_source(i: int, source) -> list[str]:
        import sqlalchemy as sa

        try:
            engine = source_engine(source.conn_id)
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                tables = set(sa.inspect(conn).get_table_names())
            engine.dispose()
        except Exception as exc:  # noqa: BLE001
            return [
                f"sources[{i}] ({source.id}): database of connection {source.conn_id!r} is unreachable "
                f"({type(exc).__name__}); check host, port and credentials of the connection"
            ]
        problems = []
        if source.subject_table not in tables:
            problems.append(
                f"sources[{i}].subject_table: table {source.subject_table!r} does not exist in {source.id}"
            )
        if source.notify and source.notify.table not in tables:
            problems.append(
                f"sources[{i}].notify.table: table {source.notify.table!r} does not exist in {source.id}"
            )
        for j, rule in enumerate(source.retain):
            if rule.table not in tables:
                problems.append(
                    f"sources[{i}].retain[{j}].table: table {rule.table!r} does not exist in {source.id}"
                )
        return problems

    @staticmethod
    def _check_s3(m) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        location = s3_location(m.backup.conn_id, m.backup)
        try:
            location.client().list_buckets()
        except (BotoCoreError, ClientError) as exc:
            return [
                f"backup.conn_id: the S3 store {location.endpoint_url or 'AWS'} of connection "
                f"{m.backup.conn_id!r} is unreachable or refuses the credentials ({type(exc).__name__})"
            ]
        return []

    @staticmethod
    def _check_smtp(conn_id: str) -> list[str]:
        """Open the session the notices will use (TLS, certificate, login), then close it."""
        from dereg.errors import NotifyError
        from dereg.notify.deliver import NoticeSmtpHook

        hook = NoticeSmtpHook(conn_id)
        try:
            hook.open()
        except NotifyError as exc:
            return [f"notify.smtp_conn_id: {exc}"]
        hook.close()
        return []


class InventoryOperator(ComplianceOperator):
    """Reflect every schema, table, column, key and row count of each SQL source, and list the
    objects of each S3 prefix; split the classification into units (one per source, one per large
    table) for the mapped `classify` task."""

    stage = "inventory"
    requires = ("preflight",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.inventory.sources import inventory_sources

        found = inventory_sources(run.manifest, run.artifacts, connectors=_connectors(run), log=self.log)
        context["ti"].xcom_push(key="units", value=found["units"])
        return {"sources": found["sources"], "classification_units": len(found["units"])}


class ClassifyOperator(ComplianceOperator):
    """Classify the columns of one unit (a source, or one large table): general or sensitive
    personal information. Mapped over the units the inventory found; `classification_report`
    puts the parts together.

    :param unit: {"source", "kind", "tables", "label", "index"} from the inventory's `units` XCom.
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
        from dereg.erase.sources import plan_sources

        return plan_sources(run.manifest, run.artifacts, log=self.log)


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


class BackupOperator(ComplianceOperator):
    """Take the AES-256-GCM envelope-encrypted off-site backup of every source."""

    stage = "backup"
    requires = ("classification_report",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.sources import backup_sources
        from dereg.keys_kms import backup_key_provider

        m = run.manifest
        return backup_sources(
            m,
            run.artifacts,
            connectors=_connectors(run),
            keyring=backup_key_provider(),
            location=s3_location(m.backup.conn_id, m.backup),
            log=self.log,
            progress=self._progress,
        )


class RestoreVerifyOperator(ComplianceOperator):
    """Restore each backup into a scratch database and compare it with its manifest."""

    stage = "restore_verify"
    requires = ("backup",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.sources import restore_verify_sources
        from dereg.keys_kms import backup_key_provider

        m = run.manifest
        return restore_verify_sources(
            m,
            run.artifacts,
            keyring=backup_key_provider(),
            location=s3_location(m.backup.conn_id, m.backup),
            scratch_url=scratch_url,
            log=self.log,
            progress=self._progress,
        )


class EraseOperator(ComplianceOperator):
    """Run exactly the approved erasure plan: delete customers' rows, pseudonymize kept records."""

    stage = "erase"
    requires = ("restore_verify", "approve")
    destructive = True

    def check_gates(self, run: RunContext) -> None:
        """Beyond the ledger entries: approved, same plan hash, approver not the trigger, no open
        request (`dereg.erase.gate`). A refusal is recorded with every reason."""
        from dereg.erase.gate import Approval, EraseRefused, check_erase_gate
        from dereg.notify.answers import open_requests

        super().check_gates(run)
        if run.dry_run:
            return  # a dry run erases nothing, so it needs no approval
        try:
            check_erase_gate(
                Approval.from_entry(run.succeeded("approve")),
                run.plans,
                triggered_by=run.triggered_by,
                pending_requests=open_requests(run.store, run.company_id, run.run_id),
                company_id=run.company_id,
                run_id=run.run_id,
            )
        except EraseRefused as refused:
            run.record(self.stage, "refused", reason=str(refused))
            raise

    def dry_run_summary(self, run: RunContext, context) -> dict:
        from dereg.erase.sources import erase_preview

        return erase_preview(run.plans)

    def act(self, run: RunContext, context) -> dict:
        from dereg.erase.sources import erase_sources
        from dereg.keys import Keyring

        return erase_sources(
            run.manifest,
            run.plans,
            connectors=_connectors(run),
            pseudonym_key=Keyring.load().pseudonym_key,
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

        return verify_sources(run.manifest, run.plans, connectors=_connectors(run))


class CertificateOperator(ComplianceOperator):
    """Issue the signed certificate of erasure (or, in a dry run, a signed dry-run report)."""

    stage = "certificate"
    requires = ("verify_erasure",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.certify import issue_certificate
        from dereg.keys import Keyring

        return issue_certificate(
            run,
            source_urls={s.id: _describe_store(s.conn_id) for s in run.manifest.sources},
            keyring=Keyring.load(),
            log=self.log,
        )


def _describe_store(conn_id: str) -> dict[str, Any]:
    """Where a source lives, without credentials."""
    conn = get_connection(conn_id)
    return {
        "conn_id": conn_id,
        "type": conn.conn_type,
        "location": conn.host
        if conn.conn_type == "sqlite"
        else f"{conn.host}:{conn.port or ''}/{conn.schema or ''}",
    }


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
