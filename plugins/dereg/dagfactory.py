"""Build one `closure__<company_id>` DAG per company manifest.

A manifest that does not validate still gets its DAG, tagged `broken-manifest`, whose only task
fails with every problem listed: a broken manifest is visible in the UI and never hides the other
companies' DAGs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from airflow.sdk import DAG, Param

from dereg import config
from dereg.errors import ManifestError
from dereg.manifest import company_id_from_path, load_manifest, manifest_paths


def _on_failure(context) -> None:
    from dereg.alerts import on_task_failure

    on_task_failure(context)


DEFAULT_ARGS = {
    "owner": "dereg",
    "retries": 1,
    "retry_delay": dt.timedelta(seconds=config.retry_delay_seconds()),
    # e-mails contacts.operations_email with company, task and a link to the log (dereg.alerts)
    "on_failure_callback": _on_failure,
}


def closure_params() -> dict[str, Param]:
    return {
        "dry_run": Param(
            True,
            type="boolean",
            title="演练模式 / Dry run",
            description="默认开启：执行全部检查、备份与恢复验证，但不发送通知、不删除数据。"
            " / On by default: runs every check, the backup and its restore, but sends no notice "
            "and erases nothing.",
        ),
        "reason": Param(
            type="string",
            minLength=5,
            title="原因 / Reason",
            description="为何执行此次注销清理（写入审计账本）。 / Why this closure runs (written to the ledger).",
        ),
        "notice_window_days": Param(
            30,
            type="integer",
            minimum=0,
            maximum=365,
            title="通知期（天） / Notice window (days)",
            description="通知客户后等待答复的天数，期满后方可删除。 / Days to wait for customers' answers after "
            "the notices before anything is erased.",
        ),
    }


def build_closure_dag(manifest_path: Path) -> DAG:
    from airflow.sdk import chain

    from dereg.operators.approval import ErasureApprovalOperator
    from dereg.operators.stages import (
        BackupOperator,
        BackupPartOperator,
        BackupPrepareOperator,
        CertificateOperator,
        ClassificationReportOperator,
        ClassifyOperator,
        EraseOperator,
        FulfilRequestsOperator,
        InventoryOperator,
        NotifyCustomersOperator,
        PlanOperator,
        PreflightOperator,
        PurgeOperator,
        RestoreBackupOperator,
        RestoreVerifyOperator,
        VerifyErasureOperator,
        WaitForResponsesOperator,
    )

    manifest = load_manifest(manifest_path)
    path = str(manifest_path)
    with DAG(
        dag_id=manifest.dag_id,
        description=f"Closure of {manifest.name_en} / {manifest.name_zh}",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        params=closure_params(),
        default_args=DEFAULT_ARGS,
        tags=["dereg", "closure"],
        doc_md=f"Closure of **{manifest.name_zh}** / {manifest.name_en}. Manifest: `{manifest_path.name}`. "
        "Stages and gates: docs/operations.md.",
    ) as dag:
        kw = {"manifest_path": path}
        preflight = PreflightOperator(task_id="preflight", retries=0, **kw)
        inventory = InventoryOperator(task_id="inventory", **kw)
        # each mapped stage expands over the return value of the stage before it (a list of
        # references: names, backup ids, part numbers; never personal data or a key)
        classify = ClassifyOperator.partial(
            task_id="classify", map_index_template="{{ task.unit['label'] }}", **kw
        ).expand(unit=inventory.output)
        report = ClassificationReportOperator(task_id="classification_report", retries=0, **kw)
        plan = PlanOperator(task_id="plan", **kw)
        notify = NotifyCustomersOperator(task_id="notify_customers", **kw)
        wait = WaitForResponsesOperator(task_id="wait_for_responses", **kw)
        fulfil = FulfilRequestsOperator(task_id="fulfil_requests", **kw)
        backup_prepare = BackupPrepareOperator(task_id="backup_prepare", **kw)
        backup_part = BackupPartOperator.partial(
            task_id="backup_part", map_index_template="{{ task.part['label'] }}", **kw
        ).expand(part=backup_prepare.output)
        # none_failed: with no part to write (every backup of the run reused), it still completes
        backup = BackupOperator(task_id="backup", trigger_rule="none_failed", **kw)
        restore_backup = RestoreBackupOperator.partial(
            task_id="restore_backup", map_index_template="{{ task.backup['label'] }}", **kw
        ).expand(backup=backup.output)
        # all_done: it drops the scratch schema of a backup restored in parts also when a part failed
        # (and then refuses); it skips itself when no backup succeeded
        restore = RestoreVerifyOperator(task_id="restore_verify", trigger_rule="all_done", **kw)
        approve = ErasureApprovalOperator(
            task_id="approve",
            approvers=manifest.approvers,
            approver_ids=manifest.approver_ids,
            retries=0,
            **kw,
        )
        erase = EraseOperator(task_id="erase", retries=0, **kw)
        purge = PurgeOperator(task_id="purge", **kw)
        verify = VerifyErasureOperator(task_id="verify_erasure", **kw)
        certificate = CertificateOperator(task_id="certificate", **kw)
        chain(preflight, inventory, classify, report, plan)
        plan >> notify >> wait >> fulfil >> approve
        chain(plan, backup_prepare, backup_part, backup, restore_backup, restore)
        restore >> approve
        chain(approve, erase, purge, verify, certificate)
    return dag


def build_broken_dag(manifest_path: Path, error: ManifestError) -> DAG:
    from dereg.operators.stages import ManifestProblemsOperator

    company_id = company_id_from_path(manifest_path)
    with DAG(
        dag_id=f"closure__{company_id}",
        description=f"BROKEN MANIFEST {manifest_path.name}: {len(error.problems)} problem(s)",
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        tags=["dereg", "closure", "broken-manifest"],
        doc_md="This company's manifest does not validate:\n\n"
        + "\n".join(f"- `{p}`" for p in error.problems),
    ) as dag:
        ManifestProblemsOperator(
            task_id="preflight", manifest_path=str(manifest_path), problems=error.problems, retries=0
        )
    return dag


def build_all(directory: Path | None = None) -> dict[str, DAG]:
    dags: dict[str, DAG] = {}
    for path in manifest_paths(directory):
        try:
            dag = build_closure_dag(path)
        except ManifestError as exc:
            dag = build_broken_dag(path, exc)
        dags[dag.dag_id] = dag
    return dags
