"""The `retention_sweep` DAG: daily destruction of backups whose retention has ended (see dereg.sweep)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, task

from dereg.dagparams import s3_connection, smtp_connection
from dereg.sweep import DAG_ID, SCHEDULE


def build_sweep_dag() -> DAG:
    with DAG(
        dag_id=DAG_ID,
        description="Daily: crypto-shred and delete every backup whose retention has ended; final certificates",
        schedule=SCHEDULE,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=["dereg", "backup", "retention"],
        params={
            "s3_conn_id": s3_connection(),
            "smtp_conn_id": smtp_connection(
                "Where alerts (a backup under legal hold, a failed destruction) are sent through."
            ),
        },
        doc_md="For every backup whose retain-until date has passed: skipped and reported while any object is "
        "under a legal hold; else every copy of its data key destroyed (crypto-shred), its objects deleted "
        "where no lock forbids, and what is left listed again. Each result is a ledger entry (stage "
        "`retention_sweep`); a company none of whose backups is readable any more gets a signed final "
        "certificate (`DEREG_OUTPUT_DIR/<company>/<run>/final-certificate.json`, `.html`, `.pdf`).",
    ) as dag:

        @task(task_id="expired_backups", retries=1)
        def list_expired() -> list[dict]:
            from dereg.evidence.store import open_store
            from dereg.sweep import expired_backups

            found = expired_backups(open_store())
            print(f"{len(found)} backup(s) whose retention has ended")
            return found

        @task(
            task_id="destroy_backup", retries=1, map_index_template="{{ task.op_kwargs['backup']['label'] }}"
        )
        def destroy(backup: dict, **context) -> dict:
            from dereg.connections import s3_location
            from dereg.errors import BackupError
            from dereg.evidence.store import open_store
            from dereg.sweep import sweep_one

            location = s3_location(
                context["params"]["s3_conn_id"], bucket=backup["bucket"], prefix=backup["prefix"]
            )
            result = sweep_one(backup, location=location, store=open_store(), sweep_run_id=context["run_id"])
            if result.get("skipped"):
                print(f"{backup['backup_id']}: skipped, {result['legal_holds']} object(s) under a legal hold")
            else:
                print(
                    f"{backup['backup_id']}: key destroyed; {result.get('versions_deleted', 0)} object version(s) "
                    f"deleted, {result.get('objects_left_locked', 0)} still locked"
                )
            if not result["ok"]:
                raise BackupError(
                    f"backup {backup['backup_id']} of {backup['company_id']} was not destroyed: "
                    + "; ".join(result.get("problems") or [])
                )
            return result

        @task(task_id="final_certificates", trigger_rule="all_done", retries=0)
        def finish(backups: list[dict], **context) -> dict:
            from dereg.connections import s3_location, smtp_hook
            from dereg.evidence.ledger import Ledger
            from dereg.evidence.store import open_store
            from dereg.keys import Keyring
            from dereg.sweep import STAGE, alert, companies_done, final_certificate

            store = open_store()
            # results from the ledger, not XCom: a failed task leaves no XCom but always its entry
            results = [
                e.details
                for e in Ledger(store).entries()
                if e.stage == STAGE and e.run_id == context["run_id"]
            ]
            recorded = {r["backup_id"] for r in results}
            for b in backups:
                if b["backup_id"] not in recorded:
                    results.append(
                        {
                            "backup_id": b["backup_id"],
                            "company_id": b["company_id"],
                            "ok": False,
                            "problems": ["the destroy task did not record a result (see its log)"],
                        }
                    )
            issued = []
            for company in companies_done(store, results):
                issued.append(
                    final_certificate(
                        store,
                        Keyring.load(),
                        company,
                        sweep_run_id=context["run_id"],
                        location_of=lambda bucket, prefix: s3_location(
                            context["params"]["s3_conn_id"], bucket=bucket, prefix=prefix
                        ),
                        progress=print,
                    )
                )
                print(f"final certificate for {company}: {issued[-1]['path']}")
            sent = alert(
                results, smtp_hook(context["params"]["smtp_conn_id"]), sweep_run_id=context["run_id"]
            )
            destroyed = sum(1 for r in results if r.get("ok") and not r.get("skipped"))
            print(
                f"{destroyed} of {len(results)} expired backup(s) destroyed; {len(issued)} final certificate(s); {sent} alert(s)"
            )
            return {
                "backups": len(results),
                "destroyed": destroyed,
                "final_certificates": issued,
                "alerts": sent,
            }

        backups = list_expired()
        finish(backups).set_upstream(destroy.expand(backup=backups))
    return dag
