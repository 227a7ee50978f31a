"""The daily retention sweep, run with `dag.test()` on SeaweedFS and the real store: backups with a
retention of a few seconds. The expired one is crypto-shredded and its objects deleted, one under a
legal hold is skipped and reported to the operations address, one still retained is not touched;
once the hold is lifted the last one goes too and the company gets a signed final certificate that
cites its closure certificate."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time

import pytest
import sqlalchemy as sa

from dereg.backup import catalog
from dereg.backup.archive import create_backup
from dereg.cli import main as dereg_cli
from dereg.connections import S3Location
from dereg.evidence.artifacts import get_artifact, put_artifact
from dereg.evidence.certificate import sign_certificate
from dereg.evidence.ledger import Ledger
from dereg.evidence.store import open_store
from dereg.keys import Keyring, public_key_pem
from dereg.sweep import FINAL, expired_backups, final_certificate, sweep_one
from tests.dags.harness import ROOT, AirflowSandbox, store_connections
from tests.integration.backup.conftest import make_small_source

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECONDS = 1 / 86400  # retention_days of one second


def _versions(s3, bucket: str, prefix: str) -> int:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    return len(listed.get("Versions", [])) + len(listed.get("DeleteMarkers", []))


def test_expired_backups_are_destroyed_held_ones_reported_and_a_final_certificate_issued(
    tmp_path, seaweed, s3_client, bucket_name, smtp_sink, monkeypatch
):
    source = f"sqlite:///{tmp_path / 'school.db'}"
    planted = make_small_source(source)
    keyring = Keyring.create(tmp_path / "keyring.json")
    store_url = f"sqlite:///{tmp_path / 'compliance.db'}"
    store = open_store(store_url)
    prefix = "closures/demo_academy"
    location = S3Location(
        seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket_name, prefix
    )
    engine = sa.create_engine(source)

    def backup(run: str, seconds: float):
        return create_backup(
            engine,
            company_id="demo_academy",
            run_id=run,
            source_id="school_db",
            location=location,
            keyring=keyring,
            store=store,
            retention_days=seconds * SECONDS,
            object_lock=True,
        )

    # retentions long enough that a loaded machine still stores every chunk before its lock date
    # (SeaweedFS refuses a retain-until already past), then waited out by the catalog's dates
    expired, held, retained = backup("run-a", 12), backup("run-b", 12), backup("run-c", 86400)
    engine.dispose()
    manifest_key = location.key(held.backup_id, "manifest.json")
    s3_client.put_object_legal_hold(Bucket=bucket_name, Key=manifest_key, LegalHold={"Status": "ON"})
    # the closure certificate the final certificate cites
    closure = sign_certificate(
        {"title": "closure", "dry_run": False, "finished_at": "2026-12-31T00:00:00+00:00"}, keyring
    )
    put_artifact(store, "demo_academy", "closure-run", "certificate", closure)
    ends = max(
        dt.datetime.fromisoformat(catalog.get(store, b.backup_id)["retain_until"]) for b in (expired, held)
    )

    companies = tmp_path / "companies"
    companies.mkdir()
    shutil.copy(ROOT / "include/companies/demo-academy.yaml", companies / "demo-academy.yaml")
    env = {
        "DEREG_STORE_URL": store_url,
        "DEREG_KEYRING": str(tmp_path / "keyring.json"),
        "DEREG_OUTPUT_DIR": str(tmp_path / "output"),
        "DEREG_COMPANIES_DIR": str(companies),
        **store_connections(seaweed, smtp_sink),
    }
    # Airflow starts and parses the DAGs while the retentions run out; the run starts after
    sandbox = AirflowSandbox(tmp_path / "airflow", env=env)
    proc = sandbox.start_dag_test("retention_sweep", {}, hold=True)
    try:
        # the two short retentions end
        time.sleep(max((ends - dt.datetime.now(dt.UTC)).total_seconds(), 0) + 1)
        assert {b["backup_id"] for b in expired_backups(store)} == {expired.backup_id, held.backup_id}
    except BaseException:
        proc.kill()
        raise
    sandbox.release(proc)
    result, log = sandbox.finish(proc)
    assert result["state"] == "success", (result, log[-5000:])
    states = {label.split()[-1]: state for _, label, state in result["mapped"]["destroy_backup"]}
    assert states == {expired.backup_id: "success", held.backup_id: "success"}

    # the expired backup: key destroyed everywhere, no object left, marked destroyed
    assert catalog.wrapped_key(store, expired.backup_id) is None
    assert _versions(s3_client, bucket_name, location.key("_escrow", f"{expired.backup_id}.json")) == 0
    assert _versions(s3_client, bucket_name, location.key(expired.backup_id) + "/") == 0
    assert catalog.get(store, expired.backup_id)["status"] == "destroyed"
    # the held one and the retained one: untouched, still readable
    for kept in (held, retained):
        assert catalog.wrapped_key(store, kept.backup_id) is not None
        assert catalog.get(store, kept.backup_id)["status"] == "complete"
        assert _versions(s3_client, bucket_name, location.key(kept.backup_id) + "/") > 0
    entries = {e.details["backup_id"]: e for e in Ledger(store).entries() if e.stage == "retention_sweep"}
    assert entries[expired.backup_id].event == "succeeded" and entries[held.backup_id].event == "skipped"
    assert entries[expired.backup_id].details["versions_deleted"] > 0
    # one alert, to the company's operations address, naming the held backup
    (message,) = smtp_sink.messages()
    assert message["To"] == "ops@demo-academy.example" and held.backup_id in message.get_content()
    assert "legal hold" in message.get_content()
    # no final certificate while a backup of the company is readable
    assert not list((tmp_path / "output").rglob("final-certificate.json"))
    assert not [v for v in planted if v in log]

    # the hold lifted and the last backup's retention over: it goes too, and the final certificate
    s3_client.put_object_legal_hold(Bucket=bucket_name, Key=manifest_key, LegalHold={"Status": "OFF"})
    outcome = sweep_one(
        catalog.get(store, held.backup_id), location=location, store=store, sweep_run_id="sweep-2"
    )
    assert outcome["ok"] and not outcome.get("skipped"), outcome
    # the retained backup's lock runs for a day: its destruction is refused, nothing destroyed
    refused = sweep_one(
        {**catalog.get(store, retained.backup_id)}, location=location, store=store, sweep_run_id="sweep-2"
    )
    assert not refused["ok"] and "retained until" in refused["problems"][0]
    assert catalog.wrapped_key(store, retained.backup_id) is not None
    with store.begin() as conn:  # as if its day had passed (the catalog's date only: the lock holds)
        conn.execute(
            catalog.backups.update()
            .where(catalog.backups.c.backup_id == retained.backup_id)
            .values(retain_until="2000-01-01T00:00:00+00:00")
        )
    locked = sweep_one(
        {**catalog.get(store, retained.backup_id)}, location=location, store=store, sweep_run_id="sweep-2"
    )
    assert not locked["ok"] and "locked" in locked["problems"][0]  # the store's own lock says later

    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("DEREG_COMPANIES_DIR", str(companies))
    with store.begin() as conn:  # the retained backup is someone else's problem for this check
        conn.execute(
            catalog.backups.update()
            .where(catalog.backups.c.backup_id == retained.backup_id)
            .values(company_id="other_co")
        )
    issued = final_certificate(
        store,
        keyring,
        "demo_academy",
        sweep_run_id="sweep-2",
        location_of=lambda bucket, prefix: S3Location(
            seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket, prefix
        ),
    )
    assert issued["backups"] == 2
    cert = get_artifact(store, "demo_academy", "sweep-2", FINAL)
    body = cert["body"]
    text = json.dumps(closure, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    assert body["closure_certificate"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert {b["backup_id"] for b in body["backups_destroyed"]} == {expired.backup_id, held.backup_id}
    assert body["residual_risks"] and "no readable copy" in body["statement"]
    pem = tmp_path / "signing.pem"
    pem.write_text(public_key_pem(keyring.public_key()))
    # its ledger is anchored off-site: a signed checkpoint beside the backups, locked, that matches
    assert body["ledger"]["checkpoints"] == f"s3://{bucket_name}/{prefix}"
    (anchor,) = s3_client.list_objects_v2(Bucket=bucket_name, Prefix=f"{prefix}/_ledger/checkpoints/")[
        "Contents"
    ]
    lock = s3_client.get_object_retention(Bucket=bucket_name, Key=anchor["Key"])["Retention"]
    assert lock["Mode"] == "COMPLIANCE" and lock["RetainUntilDate"].year >= dt.datetime.now(dt.UTC).year + 3
    for env_name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(
            env_name,
            {
                "AWS_ENDPOINT_URL": seaweed.endpoint_url,
                "AWS_ACCESS_KEY_ID": seaweed.access_key,
                "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
            }[env_name],
        )
    verify = ["verify-certificate", issued["path"], "--store", store_url, "--public-key", str(pem)]
    assert dereg_cli(verify) == 0
    assert dereg_cli([*verify, "--checkpoints", body["ledger"]["checkpoints"]]) == 0
    store.dispose()
