"""Key rotation on SeaweedFS and the real store: an interrupted rotation (one backup re-wrapped, the
other not) keeps the old key from being destroyed; the `key_rotation` DAG (dag.test) then rotates
again, re-wraps every live backup key, deletes the escrow objects' older versions and destroys the
retired keys; both backups restore across the rotations."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
import sqlalchemy as sa

from dereg.backup import catalog
from dereg.backup.archive import create_backup
from dereg.backup.restore import restore_and_verify
from dereg.connections import S3Location
from dereg.errors import KeyringError
from dereg.evidence.ledger import Ledger
from dereg.evidence.store import open_store
from dereg.keys import Keyring
from dereg.rotation import destroy_retired, rewrap_backups, rotate_keyring
from tests.dags.harness import ROOT, AirflowSandbox, store_connections
from tests.integration.backup.conftest import make_small_source

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _escrow_keks(s3, bucket: str, key: str) -> list[str]:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [
        json.loads(s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])["Body"].read())["kek_id"]
        for v in listed
        if v["Key"] == key
    ]


def test_rotation_rewraps_every_backup_key_and_destroys_old_keys_only_when_nothing_needs_them(
    tmp_path, seaweed, s3_client, bucket_name, monkeypatch, capsys
):
    source = f"sqlite:///{tmp_path / 'school.db'}"
    make_small_source(source)
    ring_path = tmp_path / "keyring.json"
    keyring = Keyring.create(ring_path)
    first_kek = keyring.active_kek_id()
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
    backups = [
        create_backup(
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
        for i in range(2)
    ]
    engine.dispose()
    escrow = [location.key("_escrow", f"{b.backup_id}.json") for b in backups]

    # an interrupted rotation: the first backup re-wrapped, the second not yet
    rotated = rotate_keyring(keyring, grace_days=0, store=store)
    second_kek = rotated["new_kek"]
    rewrap_backups(store, keyring, location, only=[backups[0].backup_id])
    assert catalog.wrapped_key(store, backups[0].backup_id)[0] == second_kek
    assert catalog.wrapped_key(store, backups[1].backup_id)[0] == first_kek
    assert _escrow_keks(s3_client, bucket_name, escrow[0]) == [second_kek]  # the old version deleted
    # the old key still wraps the second backup's data key: it is not destroyed
    with pytest.raises(KeyringError, match=backups[1].backup_id):
        destroy_retired(keyring, store, location, now=dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    assert first_kek in Keyring.load(ring_path).keks

    env = {
        "DEREG_STORE_URL": store_url,
        "DEREG_KEYRING": str(ring_path),
        "DEREG_OUTPUT_DIR": str(tmp_path / "output"),
        "DEREG_COMPANIES_DIR": str(tmp_path / "companies"),
        **store_connections(seaweed),
    }
    (tmp_path / "companies").mkdir()
    shutil.copy(ROOT / "include/companies/demo-academy.yaml", tmp_path / "companies" / "demo-academy.yaml")
    result, log = AirflowSandbox(tmp_path / "airflow", env=env).run_dag(
        "key_rotation", {"rotate": True, "grace_days": 0}
    )
    assert result["state"] == "success", (result, log[-5000:])

    after = Keyring.load(ring_path)
    third_kek = after.active_kek_id()
    assert third_kek not in (first_kek, second_kek)
    assert set(after.keks) == {third_kek} and after.retired == {}  # both retired keys destroyed
    for b, key in zip(backups, escrow, strict=True):
        assert catalog.wrapped_key(store, b.backup_id)[0] == third_kek
        assert _escrow_keks(s3_client, bucket_name, key) == [third_kek]
        report = restore_and_verify(b.backup_id, location=location, keyring=after, store=store)
        assert report.ok, report.problems
    events = [(e.company_id, e.event) for e in Ledger(store).entries() if e.stage == "key_rotation"]
    assert ("_deployment", "rotated") in events and ("demo_academy", "rewrapped") in events
    assert ("_deployment", "destroyed") in events
    # a restore with only the escrow copy (the store's row gone) also works under the new key
    with store.begin() as conn:
        conn.execute(
            catalog.backup_keys.delete().where(catalog.backup_keys.c.backup_id == backups[0].backup_id)
        )
    assert restore_and_verify(backups[0].backup_id, location=location, keyring=after, store=store).ok

    # the same from the command line
    from dereg.cli import main as dereg_cli

    for name, value in {
        "DEREG_STORE_URL": store_url,
        "DEREG_KEYRING": str(ring_path),
        "AWS_ENDPOINT_URL": seaweed.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
    }.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert dereg_cli(["keyring", "rotate", "--grace-days", "0"]) == 0
    out = capsys.readouterr().out
    fourth = Keyring.load(ring_path).active_kek_id()
    assert f"{third_kek} retired" in out and "2 backup key(s) re-wrapped" in out
    assert catalog.wrapped_key(store, backups[1].backup_id)[0] == fourth
    assert catalog.wrapped_key(store, backups[0].backup_id) is None  # escrow only, under the new key:
    assert _escrow_keks(s3_client, bucket_name, escrow[0]) == [fourth]
    assert dereg_cli(["keyring", "destroy-retired"]) == 0
    final = Keyring.load(ring_path)
    assert set(final.keks) == {fourth}
    assert restore_and_verify(backups[0].backup_id, location=location, keyring=final, store=store).ok
    store.dispose()
