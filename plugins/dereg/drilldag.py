"""The `recovery_drill` DAG: quarterly restores of every retained backup (see dereg.drill)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, task

from dereg.dagparams import s3_connection, smtp_connection
from dereg.drill import DAG_ID, SCHEDULE


def build_drill_dag() -> DAG:
    with DAG(
        dag_id=DAG_ID,
        description="Quarterly recovery drill: restore and verify every retained backup",
        schedule=SCHEDULE,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=["dereg", "backup", "drill"],
        params={
            "s3_conn_id": s3_connection(),
            "smtp_conn_id": smtp_connection(
                "Where failure alerts to each company's operations address are sent through."
            ),
        },
        doc_md="Restores every complete backup still under retention into a scratch database and checks row "
        "counts and content hashes; results in the ledger (stage `recovery_drill`) and in "
        "`DEREG_OUTPUT_DIR/drills/<run>.json`; failures e-mailed to the company's operations address.",
    ) as dag:

        @task(task_id="retained_backups", retries=1)
        def list_retained(**context) -> list[dict]:
            from dereg.connections import s3_location
            from dereg.drill import drill_units, retained_backups
            from dereg.evidence.store import open_store
            from dereg.keys_kms import backup_key_provider

            store = open_store()
            found = retained_backups(store)
            # a large backup is drilled in parts, shared by the workers (DEREG_BACKUP_PART_ROWS)
            units = drill_units(
                found,
                location_of=lambda b: s3_location(
                    context["params"]["s3_conn_id"], bucket=b["bucket"], prefix=b["prefix"]
                ),
                keyring=backup_key_provider(),
                store=store,
            )
            print(f"{len(found)} retained backup(s) to drill, in {len(units)} task(s)")
            return units

        @task(task_id="drill", retries=0, map_index_template="{{ task.op_kwargs['backup']['label'] }}")
        def drill(backup: dict, **context) -> dict:
            from dereg.connections import s3_location
            from dereg.drill import drill_one, drill_part, scratch_url_for
            from dereg.errors import RestoreMismatch
            from dereg.evidence.store import open_store
            from dereg.keys_kms import backup_key_provider

            location = s3_location(
                context["params"]["s3_conn_id"], bucket=backup["bucket"], prefix=backup["prefix"]
            )

            result = (drill_part if "part" in backup else drill_one)(
                backup,
                scratch_url=scratch_url_for(backup),
                location=location,
                keyring=backup_key_provider(),
                store=open_store(),
                drill_run_id=context["run_id"],
                progress=print,
            )
            print(f"drill of {backup['label']}: ok={result['ok']} in {result['seconds']} s")
            if not result["ok"]:
                raise RestoreMismatch(
                    f"recovery drill of backup {backup['label']} ({backup['company_id']}) failed: "
                    + "; ".join(result["problems"])
                )
            return result

        @task(task_id="drill_report", trigger_rule="all_done", retries=0)
        def report(backups: list[dict], **context) -> dict:
            from dereg.connections import s3_location, smtp_hook
            from dereg.drill import (
                PART_STAGE,
                STAGE,
                alert_failures,
                finish_drill_parts,
                scratch_url_for,
                write_report,
            )
            from dereg.evidence.ledger import Ledger
            from dereg.evidence.store import open_store
            from dereg.keys_kms import backup_key_provider

            store = open_store()
            # results from the ledger, not XCom: a failed drill task leaves no XCom but always its entry
            run_entries = [e for e in Ledger(store).entries() if e.run_id == context["run_id"]]
            # a backup drilled in parts: finished here (foreign keys across the parts, scratch dropped)
            split = {b["backup_id"]: b for b in backups if "part" in b}
            for backup_id, backup in split.items():
                latest = {}
                for e in run_entries:  # in ledger order: a retried part's last entry wins
                    if e.stage == PART_STAGE and e.details.get("backup_id") == backup_id:
                        latest[e.details.get("part")] = e.details
                try:
                    done = finish_drill_parts(
                        backup,
                        list(latest.values()),
                        location=s3_location(
                            context["params"]["s3_conn_id"], bucket=backup["bucket"], prefix=backup["prefix"]
                        ),
                        keyring=backup_key_provider(),
                        store=store,
                        drill_run_id=context["run_id"],
                        scratch_url=scratch_url_for(backup),
                    )
                except Exception as exc:  # noqa: BLE001 - reported below as a drill without a result
                    print(f"drill of {backup_id} could not be finished ({type(exc).__name__})")
                    continue
                print(f"drill of {backup_id} in {backup['parts']} parts: ok={done['ok']}")
            entries = [
                e for e in Ledger(store).entries() if e.stage == STAGE and e.run_id == context["run_id"]
            ]
            backups = list({b["backup_id"]: b for b in backups}.values())
            results = [e.details for e in entries]
            drilled = {r["backup_id"] for r in results}
            for b in backups:
                if b["backup_id"] not in drilled:
                    results.append(
                        {
                            "backup_id": b["backup_id"],
                            "company_id": b["company_id"],
                            "ok": False,
                            "problems": ["the drill task did not record a result (see its log)"],
                        }
                    )
            path = write_report(results, context["run_id"])
            sent = alert_failures(
                results, smtp_hook(context["params"]["smtp_conn_id"]), drill_run_id=context["run_id"]
            )
            passed = sum(1 for r in results if r.get("ok"))
            print(
                f"drill report {path}: {passed} of {len(results)} backups restored and verified; {sent} alert(s) sent"
            )
            return {"report": str(path), "backups": len(results), "passed": passed, "alerts": sent}

        backups = list_retained()
        report(backups).set_upstream(drill.expand(backup=backups))
    return dag
