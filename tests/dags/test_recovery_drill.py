"""The quarterly recovery drill, run with `dag.test()`: three retained backups in SeaweedFS, two of
them large enough to be drilled in parts (DEREG_BACKUP_PART_ROWS) and one of those corrupted; the
good ones pass, the bad one fails with its part and chunk named, all land in the ledger, the report
is written and the company's operations address gets one alert."""

from __future__ import annotations

import json
import shutil

import pytest

from dereg.backup.archive import create_backup
from dereg.connections import S3Location
from dereg.evidence.ledger import Ledger
from dereg.evidence.store import open_store
from dereg.keys import Keyring
from tests.dags.harness import ROOT, AirflowSandbox, store_connections
from tests.integration.backup.conftest import make_small_source

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_drill_restores_every_retained_backup_and_reports_failures(
    tmp_path, seaweed, s3_client, bucket_name, smtp_sink, pg_url, monkeypatch
):
    """The source is PostgreSQL and its connection is known: each drill restores into a scratch
    schema on the source's own server, which is gone afterwards, also for the corrupted backup."""
    import sqlalchemy as sa

    from dereg.backup import pgcopy

    monkeypatch.setattr(pgcopy, "PACK_BELOW", 0)  # every table in chunks of its own: one is spoiled below
    source = pg_url
    planted = make_small_source(source)
    keyring = Keyring.create(tmp_path / "keyring.json")
    store_url = f"sqlite:///{tmp_path / 'compliance.db'}"
    store = open_store(store_url)
    location = S3Location(
        seaweed.endpoint_url,
        seaweed.access_key,
        seaweed.secret_key,
        "cn-north-1",
        bucket_name,
        "closures/demo_academy",
    )
    engine = sa.create_engine(source)

    def take(i: int):
        return create_backup(
            engine,
            company_id="demo_academy",
            run_id=f"run-{i}",
            source_id="school_db",
            location=location,
            keyring=keyring,
            store=store,
            retention_days=1,
            object_lock=True,
        )

    # 201 payments: two parts of at most 150 rows ([payments], [guardians, students]); then 100: whole
    records = [take(0), take(1)]
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM payments WHERE id > 100")
    records.append(take(2))
    engine.dispose()
    bad = records[1]
    key = location.key(bad.backup_id, "data", "students", "000000.chunk")
    blob = bytearray(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    blob[len(blob) // 2] ^= 0x01
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=bytes(blob))

    companies = tmp_path / "companies"
    companies.mkdir()
    shutil.copy(ROOT / "include/companies/demo-academy.yaml", companies / "demo-academy.yaml")
    env = {
        "DEREG_STORE_URL": store_url,
        "DEREG_KEYRING": str(tmp_path / "keyring.json"),
        "DEREG_OUTPUT_DIR": str(tmp_path / "output"),
        "DEREG_COMPANIES_DIR": str(companies),
        "DEREG_BACKUP_PART_ROWS": "150",
        "AIRFLOW_CONN_DEMO_ACADEMY_DB": json.dumps(
            {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "login": "postgres",
                "schema": sa.make_url(pg_url).database,
            }
        ),
        **store_connections(seaweed, smtp_sink),
    }
    result, log = AirflowSandbox(tmp_path / "airflow", env=env).run_dag("recovery_drill", {})
    states = {label: state for _, label, state in result["mapped"]["drill"]}
    label = "demo_academy.school_db {}".format
    assert states == {
        f"{label(records[0].backup_id)} part 1/2": "success",
        f"{label(records[0].backup_id)} part 2/2": "success",
        f"{label(bad.backup_id)} part 1/2": "success",
        f"{label(bad.backup_id)} part 2/2": "failed",  # guardians and students
        label(records[2].backup_id): "success",
    }, (result, log[-4000:])
    assert result["tasks"]["drill_report"] == "success"

    entries = [e for e in Ledger(store).entries() if e.stage == "recovery_drill"]
    assert {(e.details["backup_id"], e.event) for e in entries} == {
        (records[0].backup_id, "succeeded"),
        (bad.backup_id, "failed"),
        (records[2].backup_id, "succeeded"),
    }
    good = next(e for e in entries if e.details["backup_id"] == records[0].backup_id).details
    assert good["seconds"] >= 0 and good["rows"] == 205 and good["parts"] == 2
    assert good["foreign_keys_checked"] == 2  # across the parts, in their shared scratch schema
    whole = next(e for e in entries if e.details["backup_id"] == records[2].backup_id).details
    assert whole["rows"] == 104 and "parts" not in whole
    failed = next(e for e in entries if e.event == "failed").details
    # the drill redacts what it records; backup ids are made so that redact leaves them whole
    assert any(p.startswith("part 2/2: ") and key in p and "chunk 0" in p for p in failed["problems"]), (
        failed["problems"]
    )
    part_entries = [e for e in Ledger(store).entries() if e.stage == "recovery_drill_part"]
    assert sorted((e.details["backup_id"], e.details["part"], e.event) for e in part_entries) == sorted(
        [(records[0].backup_id, 0, "succeeded"), (records[0].backup_id, 1, "succeeded")]
        + [(bad.backup_id, 0, "succeeded"), (bad.backup_id, 1, "failed")]
    )

    reports = list((tmp_path / "output" / "drills").glob("*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert (
        report["backups"] == 3 and report["passed"] == 2 and report["failed"][0]["backup_id"] == bad.backup_id
    )

    messages = smtp_sink.messages()
    assert len(messages) == 1
    assert messages[0]["To"] == "ops@demo-academy.example" and "FAILED" in messages[0]["Subject"]
    assert bad.backup_id in messages[0].get_content()
    assert not [v for v in planted if v in log]
    # the scratch schema on the source's own server was used, and is gone
    assert f"into a scratch schema on PostgreSQL 127.0.0.1:5432/{sa.make_url(pg_url).database}" in log
    assert "scratch SQLite instead" not in log
    check = sa.create_engine(pg_url)
    with check.connect() as conn:
        leftovers = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_namespace WHERE starts_with(nspname, 'dereg_scratch_')"
        ).scalar()
    check.dispose()
    assert leftovers == 0
    store.dispose()
