"""The closure stages, one thin operator each. The work is in plain functions of `dereg`.

Each operator loops over the manifest's sources (a later issue maps them per source and table),
logs one line per step, and returns counts and references only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from dereg.connections import (
    backup_location,
    describe_store,
    object_client,
    scratch_url,
    smtp_hook,
    source_engine,
)
from dereg.dialects import disposing
from dereg.errors import DeregError, GateError, RestoreMismatch
from dereg.evidence.artifacts import get_artifact, put_artifact
from dereg.operators.base import ComplianceOperator, RunContext, manifest_digest

ERASE_BATCH = 5000  # rows per transaction when deleting or pseudonymizing in batches


def combined_plan_hash(plan_hashes: dict[str, str]) -> str:
    """One hash over every source's erasure plan: what the approver approves."""
    text = "\n".join(f"{sid}:{h}" for sid, h in sorted(plan_hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _inventory(run: RunContext, source_id: str):
    from dereg.model import SourceInventory

    return SourceInventory.from_dict(
        get_artifact(run.store, run.company_id, run.run_id, f"inventory.{source_id}")
    )


def _classification(run: RunContext, source_id: str):
    from dereg.model import ClassificationResult

    return ClassificationResult.from_dict(
        get_artifact(run.store, run.company_id, run.run_id, f"classification.{source_id}")
    )


def _load_plans(run: RunContext) -> dict:
    """The erasure plan of every source: ErasurePlan for databases, ObjectErasurePlan for S3 prefixes."""
    from dereg.erase.objects import ObjectErasurePlan
    from dereg.erase.plan import ErasurePlan

    plans: dict = {
        s.id: ErasurePlan.from_dict(get_artifact(run.store, run.company_id, run.run_id, f"plan.{s.id}"))
        for s in run.manifest.sources
    }
    for o in run.manifest.object_sources:
        plans[o.id] = ObjectErasurePlan.from_dict(
            get_artifact(run.store, run.company_id, run.run_id, f"plan.{o.id}")
        )
    return plans


def _recipients(engine, source):
    """The notice recipients of a source (its manifest's notify table and columns)."""
    from dereg.notify.recipients import collect_recipients

    return collect_recipients(
        engine,
        subject_table=source.subject_table,
        notify_table=source.notify.table,
        email_column=source.notify.email_column,
        name_column=source.notify.name_column,
        link_column=source.notify.link_column,
    )


class PreflightOperator(ComplianceOperator):
    """Check everything a closure needs before it touches anything; report every problem at once
    (the checks are `dereg.preflight`)."""

    stage = "preflight"

    def act(self, run: RunContext, context) -> dict:
        from dereg.preflight import PreflightFailed, preflight_problems

        m = run.manifest
        problems = preflight_problems(m, run.reason)
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
    requires = ("preflight",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.classify.objects import inventory_objects
        from dereg.inventory.sql import inventory_source

        summary: dict[str, dict] = {}
        units: list[dict] = []
        for source in run.manifest.sources:
            engine = source_engine(source.conn_id)
            try:
                inventory = inventory_source(engine, source.id)
            finally:
                engine.dispose()
            digest = put_artifact(
                run.store, run.company_id, run.run_id, f"inventory.{source.id}", inventory.to_dict()
            )
            rows = sum(t.row_count for t in inventory.tables)
            problems = [t for t in inventory.tables if t.problem]
            self.log.info(
                "Inventory of %s: %d tables, %d rows%s",
                source.id,
                len(inventory.tables),
                rows,
                f"; {len(problems)} table(s) could not be counted" if problems else "",
            )
            for t in problems:
                self.log.warning("  %s: %s", t.qualified_name, t.problem)
            units += classification_units(source.id, inventory, source.classify.large_table_rows)
            summary[source.id] = {
                "tables": len(inventory.tables),
                "rows": rows,
                "table_problems": len(problems),
                "artifact_sha256": digest,
            }
        for source in run.manifest.object_sources:
            client = object_client(source, run.manifest.backup)
            inventory = inventory_objects(client, source.id, source.bucket, source.prefix)
            digest = put_artifact(
                run.store, run.company_id, run.run_id, f"inventory.{source.id}", inventory.to_dict()
            )
            self.log.info(
                "Inventory of %s (s3://%s/%s): %d objects, %d bytes in %d folder/type groups",
                source.id,
                source.bucket,
                source.prefix,
                inventory.objects,
                inventory.bytes,
                len(inventory.groups),
            )
            units.append(
                {"source": source.id, "kind": "objects", "tables": [], "label": f"{source.id} (objects)"}
            )
            summary[source.id] = {
                "objects": inventory.objects,
                "bytes": inventory.bytes,
                "artifact_sha256": digest,
            }
        for i, unit in enumerate(units):
            unit["index"] = i
        put_artifact(run.store, run.company_id, run.run_id, "classification.units", units)
        context["ti"].xcom_push(key="units", value=units)
        self.log.info(
            "Classification split into %d unit(s): %s", len(units), ", ".join(u["label"] for u in units)
        )
        return {"sources": summary, "classification_units": len(units)}


def classification_units(source_id: str, inventory, large_table_rows: int) -> list[dict]:
    """One unit per table above `large_table_rows` rows, one for the rest of the source."""
    large = [t.qualified_name for t in inventory.tables if t.row_count > large_table_rows]
    rest = [t.qualified_name for t in inventory.tables if t.qualified_name not in large]
    units = [
        {"source": source_id, "kind": "sql", "tables": [name], "label": f"{source_id}.{name}"}
        for name in large
    ]
    if rest or not large:
        label = source_id if not large else f"{source_id} (other {len(rest)} tables)"
        units.append({"source": source_id, "kind": "sql", "tables": rest, "label": label})
    return units


class ClassifyOperator(ComplianceOperator):
    """Classify the columns of one unit (a source, or one large table): general or sensitive
    personal information. Mapped over the units the inventory found; `classification_report`
    puts the parts together.

    :param unit: {"source", "kind", "tables", "label", "index"} from the inventory's `units` XCom.
    """

    stage = "classify_tables"
    requires = ("inventory",)
    template_fields = ("manifest_path", "unit")

    def __init__(self, *, unit: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.unit = unit or {}

    def act(self, run: RunContext, context) -> dict:
        from dereg.classify.engine import classify_source
        from dereg.classify.objects import ObjectInventory, classify_objects

        unit = self.unit
        sid = unit["source"]
        self.log.info("Classifying %s", unit["label"])
        if unit["kind"] == "objects":
            spec = next(o for o in run.manifest.object_sources if o.id == sid)
            inventory = ObjectInventory.from_dict(
                get_artifact(run.store, run.company_id, run.run_id, f"inventory.{sid}")
            )
            client = object_client(spec, run.manifest.backup)
            result = classify_objects(client, inventory, progress=self._progress)
        else:
            source = run.manifest.source(sid)
            engine = source_engine(source.conn_id)
            try:
                result = classify_source(
                    engine,
                    _inventory(run, sid),
                    sample_size=source.classify.sample_size,
                    closure_date=run.manifest.closure_date,
                    subject_table=None,  # minors are counted once the whole source is classified
                    tables=unit["tables"],
                    progress=self._progress,
                )
            finally:
                engine.dispose()
        name = f"classification.part.{sid}.{unit['index']}"
        digest = put_artifact(run.store, run.company_id, run.run_id, name, result.to_dict())
        personal = [c for c in result.columns if c.personal]
        for c in personal:
            self.log.info("  %s.%s: %s (%s) %s", c.table, c.column, ",".join(c.categories), c.level, c.reason)
        for p in result.problems:
            self.log.warning("  %s could not be classified: %s", p["table"], p["reason"])
        self.log.info(
            "Classified %s: %d columns, %d personal, %d table problem(s)",
            unit["label"],
            len(result.columns),
            len(personal),
            len(result.problems),
        )
        return {
            "unit": unit["label"],
            "columns": len(result.columns),
            "personal_columns": len(personal),
            "table_problems": len(result.problems),
            "artifact": name,
            "artifact_sha256": digest,
        }


class ClassificationReportOperator(ComplianceOperator):
    """Put the classified units together per source, count minors (and raise their data to
    sensitive), apply the manifest's overrides, and publish the report (JSON and HTML). Fails when a
    table the manifest requires could not be classified."""

    stage = "classify"
    requires = ("inventory",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.classify.engine import apply_overrides, count_minors
        from dereg.classify.objects import ObjectInventory
        from dereg.classify.report import company_report, source_report, write_report
        from dereg.model import ClassificationResult

        units = get_artifact(run.store, run.company_id, run.run_id, "classification.units")
        reports, summary, failures, overrides = [], {}, [], []
        for sid in dict.fromkeys(u["source"] for u in units):
            parts = []
            for unit in (u for u in units if u["source"] == sid):
                name = f"classification.part.{sid}.{unit['index']}"
                try:
                    parts.append(
                        ClassificationResult.from_dict(
                            get_artifact(run.store, run.company_id, run.run_id, name)
                        )
                    )
                except DeregError:
                    raise DeregError(
                        f"classification of {unit['label']} is missing for run {run.run_id}; clear and re-run "
                        f"its classify task (map index {unit['index']})"
                    ) from None
            result = ClassificationResult(
                source_id=sid,
                columns=[c for p in parts for c in p.columns],
                mode=parts[0].mode,
                sample_size=parts[0].sample_size,
                problems=[x for p in parts for x in p.problems],
            )
            if any(u["kind"] == "objects" for u in units if u["source"] == sid):
                inventory = ObjectInventory.from_dict(
                    get_artifact(run.store, run.company_id, run.run_id, f"inventory.{sid}")
                )
            else:
                source = run.manifest.source(sid)
                inventory = _inventory(run, sid)
                engine = source_engine(source.conn_id)
                try:
                    count_minors(engine, inventory, result, source.subject_table, run.manifest.closure_date)
                finally:
                    engine.dispose()
                unmatched = apply_overrides(result, source.classify.overrides)
                if unmatched:
                    raise DeregError(
                        f"sources[{sid}].classify.overrides name column(s) that do not exist: "
                        f"{', '.join(unmatched)}; fix the manifest (table and column as in the report)"
                    )
                overrides += [
                    {
                        "source": sid,
                        "table": o.table,
                        "column": o.column,
                        "categories": o.categories,
                        "reason": o.reason,
                    }
                    for o in source.classify.overrides
                ]
                required = set(source.required_tables)
                failures += [
                    f"{sid}.{p['table']}: {p['reason']}"
                    for p in result.problems
                    if p["table"] in required or p["table"].split(".")[-1] in required
                ]
            digest = put_artifact(
                run.store, run.company_id, run.run_id, f"classification.{sid}", result.to_dict()
            )
            report = source_report(result, inventory)
            reports.append(report)
            s = report["summary"]
            self.log.info(
                "Classified %s: %d personal columns (%d sensitive), %d of %d subjects are minors, %d problem(s)",
                sid,
                s["personal_columns"],
                s["sensitive_columns"],
                result.minors,
                result.subjects,
                len(result.problems),
            )
            summary[sid] = {
                "columns": s["columns"],
                "personal_columns": s["personal_columns"],
                "sensitive_columns": s["sensitive_columns"],
                "subjects": result.subjects,
                "minors": result.minors,
                "table_problems": len(result.problems),
                "artifact_sha256": digest,
            }
        m = run.manifest
        full = company_report(m.company_id, f"{m.name_zh} / {m.name_en}", run.run_id, reports)
        out = run.output_dir()
        write_report(full, out / "classification.json", out / "classification.html")
        report_digest = hashlib.sha256((out / "classification.json").read_bytes()).hexdigest()
        self.log.info("Classification report: %s (and .html)", out / "classification.json")
        if failures:
            raise DeregError(
                f"classification of company {m.company_id} could not read {len(failures)} required table(s):\n"
                + "\n".join(f"  - {f}" for f in failures)
                + "\nGrant the connection's user read access (or fix the connection) and clear this run's "
                "classify tasks; the manifest's required tables are sources[].subject_table, notify.table "
                "and classify.required_tables"
            )
        return {
            "sources": summary,
            "overrides": overrides,
            "report": str(out / "classification.json"),
            "report_sha256": report_digest,
        }


class PlanOperator(ComplianceOperator):
    """Compute the erasure plan of each source and the hash the approver approves."""

    stage = "plan"
    requires = ("classify",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.classify.objects import ObjectInventory
        from dereg.erase.objects import build_object_plan
        from dereg.erase.plan import RetainRule, build_plan

        hashes, summaries = {}, {}
        for source in run.manifest.sources:
            inventory = _inventory(run, source.id)
            classification = _classification(run, source.id)
            elsewhere = sorted(
                {
                    t.qualified_name
                    for t in inventory.tables
                    if t.schema and classification.personal_columns(t.qualified_name)
                }
            )
            if elsewhere:
                # fail closed: a plan that silently skipped them would certify an erasure that did not happen
                raise DeregError(
                    f"source {source.id}: personal data in tables outside the default schema "
                    f"({', '.join(elsewhere[:10])}); this version erases the default schema only. Move them, "
                    "or connect a second source whose default schema is theirs"
                )
            plan = build_plan(
                company_id=run.company_id,
                inventory=inventory,
                classification=classification,
                subject_table=source.subject_table,
                retain=[
                    RetainRule(table=r.table, action=r.action, law=r.law, years=r.years)
                    for r in source.retain
                ],
            )
            put_artifact(run.store, run.company_id, run.run_id, f"plan.{source.id}", plan.to_dict())
            for action in plan.tables:
                self.log.info(
                    "  %s.%s: %s %d rows %s",
                    source.id,
                    action.table,
                    action.action,
                    action.rows,
                    ",".join(action.columns),
                )
            hashes[source.id] = plan.plan_hash
            summaries[source.id] = plan.summary()
        for source in run.manifest.object_sources:
            inventory = ObjectInventory.from_dict(
                get_artifact(run.store, run.company_id, run.run_id, f"inventory.{source.id}")
            )
            plan = build_object_plan(run.company_id, inventory, _classification(run, source.id))
            put_artifact(run.store, run.company_id, run.run_id, f"plan.{source.id}", plan.to_dict())
            self.log.info(
                "  %s (objects): %s every version and delete marker of %d objects (%d bytes); %d folder/type "
                "group(s) with personal data",
                source.id,
                plan.action,
                plan.objects,
                plan.bytes,
                len(plan.personal_groups),
            )
            hashes[source.id] = plan.plan_hash
            summaries[source.id] = plan.summary()
        plan_hash = combined_plan_hash(hashes)
        self.log.info("Erasure plan hash %s", plan_hash)
        return {"plan_hash": plan_hash, "source_plan_hashes": hashes, "sources": summaries}


class NotifyCustomersOperator(ComplianceOperator):
    """Send one notice per reachable customer (the guardian, for a child), never twice."""

    stage = "notify_customers"
    requires = ("plan",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.classify.taxonomy import load_taxonomy
        from dereg.keys import Keyring
        from dereg.notify.deliver import send_notices
        from dereg.notify.render import NoticeContext

        m = run.manifest
        keyring = Keyring.load()
        taxonomy = load_taxonomy()
        today = dt.date.today()
        erase_date = today + dt.timedelta(days=run.notice_window_days)
        reports = {}
        for source in m.sources:
            if source.notify is None:
                self.log.info("Source %s names no notice recipients; skipped", source.id)
                continue
            classification = _classification(run, source.id)
            categories = sorted(
                {cat for c in classification.columns for cat in c.categories if cat in taxonomy}
            )
            ctx = NoticeContext(
                answer_link=answer_links(run, keyring.pseudonym_key, erase_date),
                company_name_zh=m.name_zh,
                company_name_en=m.name_en,
                sender=m.sender,
                reply_to=m.reply_to,
                categories=[(taxonomy[c].zh, taxonomy[c].en) for c in categories],
                kept=[f"{r.table}: {r.law}, {r.years} 年 / years" for r in source.retain],
                erase_date=erase_date,
                response_deadline=erase_date,
                complaint=m.complaint,
            )
            with disposing(source_engine(source.conn_id)) as engine:
                recipients = _recipients(engine, source)
            report = send_notices(
                recipients,
                smtp_conn_id=m.smtp_conn_id,
                ctx=ctx,
                store=run.store,
                pseudonym_key=keyring.pseudonym_key,
                company_id=run.company_id,
                run_id=run.run_id,
                dry_run=run.dry_run,
                progress=self._progress,
                rate_per_minute=m.rate_per_minute,
            )
            reports[source.id] = report.to_dict()
            self.log.info("Notices for %s: %s", source.id, report.to_dict())
        return {"sources": reports, "erase_after": erase_date.isoformat()}


def public_base_url(manifest) -> str:
    """Where customers reach the Dereg pages: notify.answer_base_url, else DEREG_PUBLIC_URL, else
    the local API server."""
    import os

    return (manifest.answer_base_url or os.environ.get("DEREG_PUBLIC_URL") or "http://localhost:8080").rstrip(
        "/"
    )


def answer_links(run: RunContext, pseudonym_key: bytes, deadline: dt.date):
    """address -> signed answer-page URL, valid until the end of the response deadline (UTC)."""
    from dereg.notify.answers import make_token
    from dereg.notify.records import recipient_ref

    base = public_base_url(run.manifest)
    expires = dt.datetime.combine(deadline + dt.timedelta(days=1), dt.time(), dt.UTC)

    def link(address: str) -> str:
        ref = recipient_ref(pseudonym_key, address)
        return f"{base}/dereg/answer/{make_token(pseudonym_key, 'answer', run.company_id, run.run_id, ref, expires)}"

    return link


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
        from dereg.notify.answers import answer_counts, open_requests

        pending = open_requests(run.store, run.company_id, run.run_id)
        return {
            "answers": answer_counts(run.store, run.company_id, run.run_id),
            "would_fulfil": {c: sum(1 for v in pending.values() if v == c) for c in ("copy", "transfer")},
        }

    def act(self, run: RunContext, context) -> dict:
        from dereg.keys import Keyring
        from dereg.notify.answers import answer_counts, open_requests

        m = run.manifest
        keyring = Keyring.load()
        pending = open_requests(run.store, run.company_id, run.run_id)
        counts = answer_counts(run.store, run.company_id, run.run_id)
        self.log.info(
            "Answers: %s; open requests: %d copy, %d transfer",
            counts,
            sum(1 for c in pending.values() if c == "copy"),
            sum(1 for c in pending.values() if c == "transfer"),
        )
        if any(c == "transfer" for c in pending.values()) and not m.successor_conn_id:
            raise DeregError(
                f"{sum(1 for c in pending.values() if c == 'transfer')} customer(s) of {run.company_id} asked for a "
                "transfer, but the manifest names no successor. Add successor: {name, conn_id} to the manifest, "
                "or waive each request with a reason (dereg answers waive), then clear this task"
            )
        done = {"copy": 0, "transfer": 0, "rows_transferred": 0, "not_found": 0}
        if pending:
            done = self._fulfil(run, keyring, pending, done)
        still = open_requests(run.store, run.company_id, run.run_id)
        if still:
            raise DeregError(
                f"{len(still)} request(s) of {run.company_id} could not be fulfilled (their address is no "
                "longer in the source). Waive each with a reason (dereg answers waive) and clear this task"
            )
        return {"answers": counts, "fulfilled": done}

    def _fulfil(self, run: RunContext, keyring, pending: dict[str, str], done: dict) -> dict:
        from email.policy import SMTP
        from email.utils import parseaddr

        from dereg.notify.answers import make_token, mark_fulfilled
        from dereg.notify.deliver import deliver_one
        from dereg.notify.fulfil import (
            bundle,
            customer_rows,
            load_copy,
            refs_to_addresses,
            store_copy,
            transfer,
        )

        m = run.manifest
        expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=m.copy_link_days)
        successor = source_engine(m.successor_conn_id) if m.successor_conn_id else None
        smtp = engine = None
        too_large = 0
        try:
            for source in m.sources:
                if source.notify is None:
                    continue
                engine = source_engine(source.conn_id)
                recipients = _recipients(engine, source)
                by_ref = refs_to_addresses(recipients.reachable, keyring.pseudonym_key)
                for ref, choice in sorted(pending.items()):
                    recipient = by_ref.get(ref)
                    if recipient is None:
                        continue
                    rows = customer_rows(
                        engine,
                        subject_table=source.subject_table,
                        notify=source.notify,
                        address=recipient.email,
                    )
                    counts = {t: len(r) for t, r in rows.items()}
                    if choice == "copy":
                        store_copy(
                            run.store,
                            keyring,
                            company_id=run.company_id,
                            run_id=run.run_id,
                            ref=ref,
                            data=bundle(rows, company=f"{m.name_zh} / {m.name_en}"),
                            expires=expires,
                        )
                        token = make_token(
                            keyring.pseudonym_key, "copy", run.company_id, run.run_id, ref, expires
                        )
                        attachment, delivery = None, "link"
                        if m.copy_delivery == "attachment":
                            # what is attached is the stored (encrypted at rest) copy, decrypted
                            attachment = load_copy(
                                run.store, keyring, company_id=run.company_id, run_id=run.run_id, ref=ref
                            )
                            if len(attachment) > m.copy_attachment_max_kb * 1024:
                                attachment, too_large = None, too_large + 1
                                delivery = "link (too large to attach)"
                            else:
                                delivery = "attachment"
                        if smtp is None:
                            smtp = smtp_hook(m.smtp_conn_id).open()
                        message = _copy_message(
                            m,
                            recipient,
                            url=f"{public_base_url(m)}/dereg/copy/{token}",
                            expires=expires,
                            attachment=attachment,
                        )
                        status, error = deliver_one(
                            smtp, parseaddr(m.sender)[1], recipient.email, message.as_bytes(policy=SMTP)
                        )
                        if status != "sent":
                            raise DeregError(
                                f"the copy for customer {ref[:12]} of {run.company_id} could not be e-mailed "
                                f"({error}); {done['copy']} cop(ies) sent so far. Fix the relay or the "
                                "address, or waive the request with a reason, then clear this task"
                            )
                        detail = {"rows": counts, "link_expires": expires.isoformat(), "delivery": delivery}
                    else:
                        inserted = transfer(engine, successor, rows)
                        done["rows_transferred"] += sum(inserted.values())
                        detail = {"rows": counts, "inserted": inserted, "successor": m.successor_name}
                    mark_fulfilled(
                        run.store,
                        company_id=run.company_id,
                        run_id=run.run_id,
                        ref=ref,
                        choice=choice,
                        status="done",
                        detail=json.dumps(detail, ensure_ascii=False),
                        actor="dereg",
                    )
                    run.record(self.stage, "fulfilled", recipient_ref=ref, choice=choice, **detail)
                    done[choice] += 1
                    if done["copy"] + done["transfer"] and (done["copy"] + done["transfer"]) % 50 == 0:
                        self.log.info(
                            "Fulfilled %d copy and %d transfer request(s)", done["copy"], done["transfer"]
                        )
                engine.dispose()
                engine = None
        finally:
            if smtp is not None:
                smtp.close()
            if engine is not None:  # a source left half-way by an error
                engine.dispose()
            if successor is not None:
                successor.dispose()
        if too_large:
            self.log.info(
                "%d cop(ies) exceeded notify.copy_attachment_max_kb (%d KiB) and were sent as a link instead",
                too_large,
                m.copy_attachment_max_kb,
            )
        self.log.info("Fulfilled %d copy and %d transfer request(s)", done["copy"], done["transfer"])
        return done


def _copy_message(m, recipient, *, url: str, expires: dt.datetime, attachment: bytes | None = None):
    """The e-mail that brings a customer their copy: the ZIP attached, or an expiring link."""
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    if attachment is not None:
        message = EmailMessage()
        message.set_content(
            f"{recipient.name}，您好：\n\n按您的要求，附件是您的个人信息副本（JSON 与 CSV，ZIP 压缩包）。\n\n"
            f"{m.name_zh}\n\nDear {recipient.name},\n\nAs you asked, the attached ZIP file holds a copy of "
            f"your personal data (JSON and CSV).\n\n{m.name_en}\n",
            charset="utf-8",
        )
        message.add_attachment(
            attachment, maintype="application", subtype="zip", filename="personal-data.zip"
        )
    else:
        message = EmailMessage()
        message.set_content(
            f"{recipient.name}，您好：\n\n按您的要求，您的个人信息副本（JSON 与 CSV，ZIP 压缩包）可在 "
            f"{expires:%Y-%m-%d} 前从以下链接下载（仅限本人使用）：\n{url}\n\n{m.name_zh}\n\n"
            f"Dear {recipient.name},\n\nAs you asked, a copy of your personal data (JSON and CSV in a ZIP file) "
            f"can be downloaded until {expires:%Y-%m-%d} from this link, which is yours alone:\n{url}\n\n"
            f"{m.name_en}\n",
            charset="utf-8",
        )
    message["Subject"] = f"{m.name_zh}：您的个人信息副本 / {m.name_en}: a copy of your personal data"
    message["From"] = m.sender
    message["To"] = recipient.email
    message["Reply-To"] = m.reply_to
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(
        domain=m.sender.rsplit("@", 1)[-1].strip("> ") if "@" in m.sender else None
    )
    return message


class BackupOperator(ComplianceOperator):
    """Take the AES-256-GCM envelope-encrypted off-site backup of every source."""

    stage = "backup"
    requires = ("classify",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.archive import create_backup
        from dereg.keys_kms import backup_key_provider

        m = run.manifest
        keyring = backup_key_provider()
        location = backup_location(m.backup.conn_id, m.backup)
        backups = {}
        for source in m.sources:
            classification = _classification(run, source.id)
            summary = {
                "personal_columns": sum(1 for c in classification.columns if c.personal),
                "sensitive_columns": sum(1 for c in classification.columns if c.level == "sensitive"),
                "minors": classification.minors,
                "subjects": classification.subjects,
            }
            with disposing(source_engine(source.conn_id)) as engine:
                record = create_backup(
                    engine,
                    company_id=run.company_id,
                    run_id=run.run_id,
                    source_id=source.id,
                    location=location,
                    keyring=keyring,
                    store=run.store,
                    retention_days=m.backup.retention_days,
                    object_lock=m.backup.object_lock,
                    classification_summary=summary,
                    progress=self._progress,
                )
            self.log.info(
                "Backup %s of %s: %d rows in %d tables (reused=%s), retained until %s",
                record.backup_id,
                source.id,
                record.total_rows,
                len(record.tables),
                record.reused,
                record.retain_until,
            )
            backups[source.id] = {
                "backup_id": record.backup_id,
                "rows": record.total_rows,
                "tables": len(record.tables),
                "retain_until": record.retain_until,
                "object_lock": record.object_lock,
                "manifest_key": record.manifest_key,
                "bucket": location.bucket,
            }
        backups.update(self._backup_object_sources(run, location, keyring))
        put_artifact(run.store, run.company_id, run.run_id, "backups", backups)
        return {"backups": backups}

    def _backup_object_sources(self, run: RunContext, location, keyring) -> dict:
        """Back up each object source that holds personal data (those are the ones erased)."""
        from dereg.backup.objects import backup_objects

        m, backups = run.manifest, {}
        for source in m.object_sources:
            classification = _classification(run, source.id)
            personal = sum(1 for c in classification.columns if c.personal)
            if not personal:
                self.log.info(
                    "Object source %s holds no personal data: not erased, so not backed up", source.id
                )
                continue
            record = backup_objects(
                object_client(source, run.manifest.backup),
                bucket=source.bucket,
                prefix=source.prefix,
                company_id=run.company_id,
                run_id=run.run_id,
                source_id=source.id,
                location=location,
                keyring=keyring,
                store=run.store,
                retention_days=m.backup.retention_days,
                object_lock=m.backup.object_lock,
                classification_summary={"personal_groups": personal},
                progress=self._progress,
            )
            self.log.info(
                "Backup %s of object source %s: %d objects (reused=%s), retained until %s",
                record.backup_id,
                source.id,
                record.total_rows,
                record.reused,
                record.retain_until,
            )
            backups[source.id] = {
                "backup_id": record.backup_id,
                "kind": "objects",
                "rows": record.total_rows,
                "tables": len(record.tables),
                "retain_until": record.retain_until,
                "object_lock": record.object_lock,
                "manifest_key": record.manifest_key,
                "bucket": location.bucket,
            }
        return backups


class RestoreVerifyOperator(ComplianceOperator):
    """Restore each backup into a scratch database and compare it with its manifest."""

    stage = "restore_verify"
    requires = ("backup",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.backup.restore import restore_and_verify
        from dereg.keys_kms import backup_key_provider

        m = run.manifest
        keyring = backup_key_provider()
        location = backup_location(m.backup.conn_id, m.backup)
        backups = get_artifact(run.store, run.company_id, run.run_id, "backups")
        conn_of = {source.id: source.conn_id for source in m.sources}
        results = {}
        for source_id, info in backups.items():
            report = restore_and_verify(
                info["backup_id"],
                location=location,
                keyring=keyring,
                store=run.store,
                scratch_url=scratch_url(conn_of.get(source_id)),
                progress=self._progress,
            )
            if not report.ok:
                raise RestoreMismatch(
                    f"backup {info['backup_id']} of {run.company_id}/{source_id} does not restore to what was "
                    "backed up:\n"
                    + "\n".join(f"  - {p}" for p in report.problems)
                    + "\nNothing will be erased. Take a new backup (clear the backup task) and investigate."
                )
            self.log.info(
                "Backup %s restored and verified: %d tables in %.1f s",
                info["backup_id"],
                len(report.tables),
                report.seconds,
            )
            results[source_id] = {
                "backup_id": info["backup_id"],
                "tables": len(report.tables),
                "rows": sum(t["restored_rows"] for t in report.tables.values()),
                "seconds": round(report.seconds, 2),
                "ok": True,
            }
        return {"restores": results}


class EraseOperator(ComplianceOperator):
    """Run exactly the approved erasure plan: delete customers' rows, pseudonymize kept records."""

    stage = "erase"
    requires = ("restore_verify", "approve")
    destructive = True

    def check_gates(self, run: RunContext) -> None:
        super().check_gates(run)
        if run.dry_run:
            return  # a dry run erases nothing, so it needs no approval
        approval = run.succeeded("approve")
        plans = _load_plans(run)
        current = combined_plan_hash({sid: p.compute_hash() for sid, p in plans.items()})
        problems = []
        if approval.details.get("decision") != "approved":
            problems.append("the plan was not approved")
        if approval.details.get("plan_hash") != current:
            problems.append(
                f"the approved plan hash {approval.details.get('plan_hash')} differs from the plan "
                f"about to run ({current}); the plan changed after approval"
            )
        if approval.actor == run.triggered_by:
            problems.append(f"the approver {approval.actor!r} is the person who triggered the run")
        from dereg.notify.answers import open_requests

        pending = open_requests(run.store, run.company_id, run.run_id)
        if pending:
            problems.append(
                f"{len(pending)} customer request(s) (copy or transfer) are neither fulfilled nor waived; clear "
                "fulfil_requests, or waive each with a reason (dereg answers waive)"
            )
        if problems:
            message = (
                f"erase refuses for company {run.company_id}, run {run.run_id}: "
                + "; ".join(problems)
                + ". Nothing was erased. Re-plan and ask a second person to approve."
            )
            run.record(self.stage, "refused", reason=message)
            raise GateError(message)

    def dry_run_summary(self, run: RunContext, context) -> dict:
        return {"would": {sid: p.summary() for sid, p in _load_plans(run).items()}}

    def act(self, run: RunContext, context) -> dict:
        from dereg.erase.execute import execute_plan
        from dereg.erase.objects import erase_objects
        from dereg.keys import Keyring

        keyring = Keyring.load()
        done = {}
        for source in run.manifest.sources:
            plan = _load_plans(run)[source.id]
            with disposing(source_engine(source.conn_id)) as engine:
                done[source.id] = execute_plan(
                    engine,
                    plan,
                    pseudonym_key=keyring.pseudonym_key,
                    batch_size=ERASE_BATCH,
                    progress=self._progress,
                    truncate_whole_tables=True,
                )
        objects = {}
        for source in run.manifest.object_sources:
            plan = _load_plans(run)[source.id]
            if plan.action != "delete":
                continue
            result = erase_objects(
                object_client(source, run.manifest.backup), plan.bucket, plan.prefix, progress=self._progress
            )
            objects[source.id] = result.to_dict()
            if result.locked:
                self.log.warning(
                    "%s: %d object version(s) are locked (Object Lock until %s, %d legal hold(s)) and stay "
                    "until then; the certificate names them",
                    source.id,
                    result.locked,
                    result.locked_until,
                    result.legal_holds,
                )
        return {"rows": done, "objects": objects}


class PurgeOperator(ComplianceOperator):
    """Rewrite touched tables so that deleted rows do not linger in the database files."""

    stage = "purge"
    requires = ("erase",)
    destructive = True

    def act(self, run: RunContext, context) -> dict:
        from dereg.erase.purge import purge

        results = {}
        for source in run.manifest.sources:
            plan = _load_plans(run)[source.id]
            touched = [t.table for t in plan.tables if t.action != "keep"]
            with disposing(source_engine(source.conn_id)) as engine:
                results[source.id] = purge(engine, touched)
            self.log.info("Purged %s: %s", source.id, results[source.id])
        for source in run.manifest.object_sources:
            if _load_plans(run)[source.id].action == "delete":
                # the versions themselves were deleted by erase; how the store reclaims their bytes on
                # disk is the store's own business, so it is named as a residual risk, not claimed
                results[source.id] = {"method": "every version and delete marker deleted (erase stage)"}
        return {"purge": results}


class VerifyErasureOperator(ComplianceOperator):
    """Scan every value of every table again: nothing personal of the erased customers may remain."""

    stage = "verify_erasure"
    requires = ("erase", "purge")
    destructive = True  # in a dry run nothing was erased, so there is nothing to verify

    def act(self, run: RunContext, context) -> dict:
        from dereg.classify.engine import full_scan_hits
        from dereg.erase.objects import verify_objects
        from dereg.erase.verify import verify_erasure
        from dereg.errors import ErasureError
        from dereg.inventory.sql import inventory_source

        results, problems = {}, []
        for source in run.manifest.sources:
            plan = _load_plans(run)[source.id]
            with disposing(source_engine(source.conn_id)) as engine:
                after = inventory_source(engine, source.id)
                hits = full_scan_hits(engine, after)
                verification = verify_erasure(engine, plan, after, hits)
            results[source.id] = {
                "ok": verification.ok,
                "tables": verification.tables,
                "notes": getattr(verification, "notes", []),
                "values_scanned_columns": len(hits),
                "personal_values_found": sum(hits.values()),
            }
            problems += [f"{source.id}: {p}" for p in verification.problems]
        for source in run.manifest.object_sources:
            plan = _load_plans(run)[source.id]
            if plan.action != "delete":
                continue
            checked = verify_objects(object_client(source, run.manifest.backup), plan.bucket, plan.prefix)
            results[source.id] = checked
            problems += [f"{source.id}: {p}" for p in checked["problems"]]
        if problems:
            raise ErasureError(
                f"erasure of {run.company_id} is not complete:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        return {"verification": results}


class CertificateOperator(ComplianceOperator):
    """Issue the signed certificate of erasure (or, in a dry run, a signed dry-run report)."""

    stage = "certificate"
    requires = ("verify_erasure",)

    def act(self, run: RunContext, context) -> dict:
        from dereg.certify import build_certificate_body
        from dereg.evidence.certificate import sign_certificate, write_certificate
        from dereg.keys import Keyring

        body = build_certificate_body(
            run, source_urls={s.id: describe_store(s.conn_id) for s in run.manifest.sources}
        )
        cert = sign_certificate(body, Keyring.load())
        stem = "dry-run-report" if run.dry_run else "certificate"
        json_path, html_path = write_certificate(cert, run.output_dir(), stem)
        put_artifact(run.store, run.company_id, run.run_id, "certificate", cert)
        self.log.info("Signed %s written to %s (and %s)", stem, json_path, html_path.name)
        return {
            "certificate_path": str(json_path),
            "html_path": str(html_path),
            "sha256": hashlib.sha256(json_path.read_bytes()).hexdigest(),
            "dry_run": run.dry_run,
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


__all__ = [name for name in dir() if name.endswith("Operator") and name != "ComplianceOperator"] + [
    "combined_plan_hash",
    "GateError",
]
