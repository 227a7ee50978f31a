"""The `key_rotation` DAG: rotate the keyring's key-encryption key on the policy's schedule, re-wrap
every live backup key under the new one, destroy retired keys whose grace period is over (see
dereg.rotation)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from dereg.dagparams import s3_connection
from dereg.rotation import DAG_ID, policy


def build_rotation_dag() -> DAG:
    rules = policy()
    with DAG(
        dag_id=DAG_ID,
        description="Rotate the key-encryption key, re-wrap every backup key, destroy retired keys after their grace",
        schedule=rules["schedule"],
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        catchup=False,
        max_active_runs=1,
        tags=["dereg", "keys"],
        params={
            "s3_conn_id": s3_connection(
                "Airflow connection of the off-site store holding the escrow copies of the backup keys."
            ),
            "rotate": Param(
                True,
                type="boolean",
                title="Rotate / 轮换密钥",
                description="Make a new key-encryption key active first; off: only finish re-wrapping and destroying.",
            ),
            "grace_days": Param(
                rules["grace_days"],
                type="integer",
                minimum=0,
                title="Grace days / 宽限天数",
                description="Days a retired key-encryption key is kept (it still unwraps) before it is destroyed.",
            ),
        },
        doc_md="Rotates the keyring's key-encryption key (schedule and grace period in include/policy/keys.yaml), "
        "re-wraps every live backup data key under it (escrow object first, then the compliance store, then the "
        "escrow object's older versions deleted), and destroys retired keys whose grace period is over once no "
        "live key depends on them. A retry finishes an interrupted rotation. Ledger stage `key_rotation`.",
    ) as dag:

        @task(task_id="rotate_kek", retries=0)
        def rotate(**context) -> dict:
            from dereg.evidence.store import open_store
            from dereg.keys_kms import backup_key_provider
            from dereg.rotation import rotate_keyring, rotated_message

            if not context["params"]["rotate"]:
                print("rotation off: re-wrapping and destroying only")
                return {}
            result = rotate_keyring(
                backup_key_provider(),  # the KMS key when DEREG_KMS_KEY_ID is set, else the keyring
                grace_days=int(context["params"]["grace_days"]),
                store=open_store(),
                actor=DAG_ID,
            )
            print(rotated_message(result))
            return result

        @task(task_id="rewrap_keys", retries=2)
        def rewrap(**context) -> dict:
            from dereg.connections import s3_location
            from dereg.evidence.store import open_store
            from dereg.keys_kms import backup_key_provider
            from dereg.rotation import rewrap_backups

            location = s3_location(context["params"]["s3_conn_id"], bucket="unused", prefix="")
            done = rewrap_backups(
                open_store(), backup_key_provider(), location, run_id=context["run_id"], actor=DAG_ID
            )
            print(f"{sum(done['rewrapped'].values())} backup key(s) re-wrapped under {done['kek']}")
            for kept in done["escrow_versions_kept"]:
                print(f"old escrow version kept by a lock: {kept['key']} ({kept['why']})")
            return {
                "kek": done["kek"],
                "rewrapped": done["rewrapped"],
                "kept": len(done["escrow_versions_kept"]),
            }

        @task(task_id="destroy_retired_keks", retries=0)
        def destroy(**context) -> dict:
            from dereg.connections import s3_location
            from dereg.evidence.store import open_store
            from dereg.keys import Keyring
            from dereg.rotation import destroy_retired

            location = s3_location(context["params"]["s3_conn_id"], bucket="unused", prefix="")
            result = destroy_retired(Keyring.load(), open_store(), location, actor=DAG_ID)
            print(f"destroyed {result['destroyed'] or 'none'}; waiting {result['waiting'] or 'none'}")
            return result

        rotate() >> rewrap() >> destroy()
    return dag
