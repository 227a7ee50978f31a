"""The body of the certificate of erasure, assembled from the ledger of one closure run.

Fields follow NIST SP 800-88's sample certificate of sanitization, adapted to data stores: who
(company, operator, approver), what (each store, its tables, counts), how (method, tool and
version, verification), when, what was kept (the backup and its retention), what could not be
reached (residual copies, named as risks), and the ledger entries that prove each step.
`issue_certificate` is the `certificate` stage: it signs that body and publishes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

import dereg
from dereg.dialects import dialect_for_connection_type

CITED_STAGES = (
    "preflight",
    "inventory",
    "classification_report",
    "plan",
    "notify_customers",
    "backup",
    "restore_verify",
    "approve",
    "erase",
    "purge",
    "verify_erasure",
)

OBJECT_METHOD = (
    "clear: every object version and delete marker under the prefix deleted through the S3 API "
    "(DeleteObjects with version ids); versions under a lock are counted and listed as residual risks"
)
OBJECT_STORE_RISKS = [
    "the storage provider's own replicas, cross-region replication targets and backups",
    "disk space of deleted objects is reclaimed by the store itself (e.g. SeaweedFS volume vacuum), not "
    "by Dereg",
]


def _method(action: str) -> str:
    # NIST SP 800-88 terms: "clear" makes data unrecoverable through the store's own interface;
    # "purge" also against reading the storage below it (here: the table files are rewritten, so
    # the deleted rows' bytes leave the disk pages); "crypto-erase" destroys the key of encrypted data.
    return {
        "delete": "purge: rows deleted (PostgreSQL: TRUNCATE where nothing kept refers to the table), then "
        "every touched table rewritten (VACUUM FULL / table rebuild / SQLite secure_delete + VACUUM)",
        "pseudonymize": "clear: personal columns of records kept by law replaced by keyed-hash tokens "
        "(or NULL), then the table rewritten so the old values leave its files",
        "keep": "none (no personal data)",
    }.get(action, action)


def count_mismatches(plan_summary: dict[str, Any], rows_affected: dict[str, Any]) -> list[str]:
    """Tables whose rows affected differ from the approved plan's count, either way round."""
    planned = dict(plan_summary.get("delete") or {})
    planned.update({t: p.get("rows") for t, p in (plan_summary.get("pseudonymize") or {}).items()})
    return [
        f"{t}: plan {planned.get(t)}, rows affected {rows_affected.get(t)}"
        for t in sorted(set(planned) | set(rows_affected))
        if planned.get(t) != rows_affected.get(t)
    ]


def _check_counts(run, stores: list[dict[str, Any]]) -> None:
    """A certificate never shows a plan count other than the rows affected: the run fails instead."""
    from dereg.errors import CertificateError

    wrong = [
        f"{s['source_id']}: {m}" for s in stores for m in count_mismatches(s["plan"], s["rows_affected"])
    ]
    if wrong:
        raise CertificateError(
            f"cannot certify {run.company_id} run {run.run_id}: rows affected differ from the approved plan ("
            + "; ".join(wrong)
            + "). The erasure did not do what was approved; investigate before any certificate is issued."
        )


def build_certificate_body(
    run, source_urls: dict[str, dict[str, Any]], plans: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Assemble the certificate body from the ledger entries of `run` (a RunContext) and, for the
    links the erasure relied on, the run's erasure `plans` (source id -> plan)."""
    from dereg.erase.plan import ErasurePlan
    from dereg.erase.review import inferred_links

    entries = {stage: run.succeeded(stage) for stage in CITED_STAGES}
    missing = [s for s, e in entries.items() if e is None]
    if missing:
        from dereg.errors import GateError

        raise GateError(
            f"cannot certify {run.company_id} run {run.run_id}: no successful {', '.join(missing)} in "
            "the ledger"
        )
    plan = entries["plan"].details
    backups = entries["backup"].details.get("backups", {})
    erase = entries["erase"].details
    purge = entries["purge"].details.get("purge", {})
    verification = entries["verify_erasure"].details
    approval = entries["approve"].details
    stores = []
    for source in run.manifest.sources:
        described = source_urls.get(source.id, {})
        dialect = dialect_for_connection_type(described.get("type", ""))
        src_plan = plan.get("sources", {}).get(source.id, {})
        sql_plan = (plans or {}).get(source.id)
        stores.append(
            {
                "source_id": source.id,
                "store": described,
                "plan": src_plan,
                "rows_affected": (erase.get("rows") or {}).get(source.id, {}),
                "method": {"delete": _method("delete"), "pseudonymize": _method("pseudonymize")},
                "purge": purge.get(source.id, {}),
                "verification": (verification.get("verification") or {}).get(source.id, {}),
                # tables tied to the subjects by links that no foreign key declares, and why
                "inferred_links": inferred_links(sql_plan) if isinstance(sql_plan, ErasurePlan) else [],
                "residual_risks": list(dialect.residual_risks),
            }
        )
    if not run.dry_run:
        _check_counts(run, stores)
    objects_erased = erase.get("objects") or {}
    for source in run.manifest.object_sources:
        src_plan = plan.get("sources", {}).get(source.id, {})
        erased = objects_erased.get(source.id, {})
        risks = list(OBJECT_STORE_RISKS)
        if erased.get("locked"):
            risks.insert(
                0,
                f"{erased['locked']} object version(s) under Object Lock or legal hold could not be deleted "
                f"(retention ends {erased.get('locked_until') or 'when the legal hold is lifted'}); delete them "
                "then",
            )
        stores.append(
            {
                "source_id": source.id,
                "store": {
                    "type": "s3",
                    "conn_id": source.conn_id,
                    "location": f"s3://{source.bucket}/{source.prefix}",
                },
                "plan": src_plan,
                "objects_affected": erased,
                "method": {"delete": OBJECT_METHOD}
                if src_plan.get("action") == "delete"
                else {"keep": _method("keep")},
                "purge": purge.get(source.id, {}),
                "verification": (verification.get("verification") or {}).get(source.id, {}),
                "residual_risks": risks,
            }
        )
    now = dt.datetime.now(dt.UTC).isoformat()
    head = run.ledger.head()
    return {
        "title": (
            "Dry-run report — NOT a certificate of erasure / 演练报告（非删除证明）"
            if run.dry_run
            else "Certificate of personal-data erasure / 个人信息删除证明"
        ),
        "dry_run": run.dry_run,
        "company": {"id": run.company_id, "name_zh": run.manifest.name_zh, "name_en": run.manifest.name_en},
        "legal_basis": run.manifest.legal_basis,
        "reason": run.reason,
        "run_id": run.run_id,
        "operator": run.triggered_by,
        "approver": entries["approve"].actor if not run.dry_run else None,
        "approved_plan_hash": approval.get("plan_hash"),
        "started_at": entries["preflight"].ts,
        "finished_at": now,
        "tool": {"name": "dereg", "version": dereg.__version__},
        "stores": stores,
        "notices": entries["notify_customers"].details.get("sources", {}),
        "backup_kept": [
            {
                "source_id": sid,
                "backup_id": b.get("backup_id"),
                "bucket": b.get("bucket"),
                "retain_until": b.get("retain_until"),
                "object_lock": b.get("object_lock"),
                "shred_after": b.get("retain_until"),
                "crypto_shred": "crypto-erase: destroy the wrapped data key (store and escrow copy) after "
                "retain_until; the locked ciphertext then cannot be read by anyone",
            }
            for sid, b in backups.items()
        ],
        "verification_method": "full scan of every value of every table with checksum-validated detectors; "
        "object stores: every version and delete marker listed again, only locked versions may remain; "
        "row counts against the approved plan",
        "verification_result": "passed" if not run.dry_run else "not run (dry run)",
        "ledger": {
            "head_hash": head.hash if head else None,
            # where the stages wrote the ledger's signed checkpoints (dereg verify-certificate --checkpoints)
            "checkpoints": f"s3://{run.manifest.backup.bucket}/{run.manifest.backup.prefix}",
            "entries": [{"stage": s, "entry_id": e.entry_id, "hash": e.hash} for s, e in entries.items()],
        },
    }


def issue_certificate(run, *, source_urls: dict[str, dict[str, Any]], keyring, log) -> dict[str, Any]:
    """Sign the certificate of `run` (a RunContext; in a dry run, a signed dry-run report), write
    it as JSON and HTML to the run's output folder and store it; returns where and its sha256."""
    from dereg.evidence.certificate import sign_certificate, write_certificate

    cert = sign_certificate(build_certificate_body(run, source_urls=source_urls, plans=run.plans), keyring)
    stem = "dry-run-report" if run.dry_run else "certificate"
    json_path, html_path = write_certificate(cert, run.output_dir(), stem)
    run.artifacts.put_certificate(cert)
    log.info("Signed %s written to %s (and %s)", stem, json_path, html_path.name)
    return {
        "certificate_path": str(json_path),
        "html_path": str(html_path),
        "sha256": hashlib.sha256(json_path.read_bytes()).hexdigest(),
        "dry_run": run.dry_run,
    }
