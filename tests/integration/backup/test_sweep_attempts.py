"""The retention sweep and backup attempts that will never complete, on SeaweedFS with Object Lock:
a failed attempt's key (store and escrow) is destroyed at the first sweep, its unlocked objects
deleted, its locked ones left for the sweep after their lock ends; an attempt left `started` for a
week is taken too. Until then no final certificate is issued for the company."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dereg.backup import catalog, writer
from dereg.backup.archive import create_backup
from dereg.connections import S3Location
from dereg.errors import BackupError, DeregError
from dereg.evidence.store import open_store
from dereg.keys import Keyring
from dereg.sweep import STALE_STARTED_DAYS, expired_backups, final_certificate, readable_backups, sweep_one
from tests.integration.backup.conftest import make_small_source

pytestmark = pytest.mark.integration


def _versions(s3, bucket: str, prefix: str) -> int:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    return len(listed.get("Versions", [])) + len(listed.get("DeleteMarkers", []))


def test_a_failed_attempt_loses_its_key_at_the_first_sweep_and_its_objects_after_their_lock(
    tmp_path, seaweed, s3_client, bucket_name, monkeypatch
):
    source = f"sqlite:///{tmp_path / 'school.db'}"
    make_small_source(source)
    keyring = Keyring.create(tmp_path / "keyring.json")
    store = open_store(f"sqlite:///{tmp_path / 'compliance.db'}")
    location = S3Location(
        seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket_name, "closures/c"
    )
    put = writer.Uploader.put

    def refusing(self, key, body, **kwargs):
        if key.endswith("manifest.json"):  # the chunks and the escrow copy are stored, then the store fails
            raise BackupError("the store refused the manifest (test)")
        return put(self, key, body, **kwargs)

    monkeypatch.setattr(writer.Uploader, "put", refusing)
    with pytest.raises(DeregError):
        create_backup(
            sa.create_engine(source),
            company_id="c",
            run_id="run-1",
            source_id="school",
            location=location,
            keyring=keyring,
            store=store,
            retention_days=1,
            object_lock=True,
        )
    monkeypatch.setattr(writer.Uploader, "put", put)
    (failed,) = catalog.list_backups(store, status="failed")
    backup_id = failed["backup_id"]
    escrow = location.key("_escrow", f"{backup_id}.json")
    objects = location.key(backup_id) + "/"
    assert (
        catalog.wrapped_key(store, backup_id) is not None and _versions(s3_client, bucket_name, escrow) == 1
    )
    locked = _versions(s3_client, bucket_name, objects)
    assert locked > 0  # its chunks, under a lock of a day
    assert [b["backup_id"] for b in readable_backups(store, "c")] == [backup_id]
    with pytest.raises(BackupError, match=f"{backup_id} \\(failed\\) still has a live data key"):
        final_certificate(store, keyring, "c", sweep_run_id="sweep-0")

    assert [b["backup_id"] for b in expired_backups(store)] == [backup_id]
    result = sweep_one(catalog.task_ref(failed), location=location, store=store, sweep_run_id="sweep-1")
    assert result["ok"], result
    assert result["attempt"] == "failed" and result["escrow_versions_deleted"] == 1
    record = catalog.get(store, backup_id)
    assert record["status"] == "abandoned" and "retention sweep sweep-1" in record["error"]
    assert catalog.wrapped_key(store, backup_id) is None
    assert _versions(s3_client, bucket_name, escrow) == 0
    # the locked chunks stay (ciphertext without a key) until the lock ends: the catalog has that date
    assert result["objects_left_locked"] == locked and _versions(s3_client, bucket_name, objects) == locked
    until = dt.datetime.fromisoformat(record["retain_until"])
    assert dt.timedelta(hours=23) < until - dt.datetime.now(dt.UTC) < dt.timedelta(days=1, hours=1)
    assert readable_backups(store, "c") == []
    assert expired_backups(store) == []  # not again before the lock ends
    later = until + dt.timedelta(minutes=1)
    assert [b["backup_id"] for b in expired_backups(store, now=later)] == [backup_id]
    store.dispose()


def test_an_attempt_left_started_for_a_week_is_swept_a_younger_one_is_not(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'compliance.db'}")
    for backup_id in ("bk-old", "bk-young"):
        catalog.start(
            store,
            backup_id=backup_id,
            company_id="c",
            run_id=backup_id,
            source_id="s",
            bucket="b",
            prefix="p",
            manifest_key=f"p/{backup_id}/manifest.json",
            object_lock=True,
            kek_id="k",
            wrapped_key="d3JhcHBlZA==",
        )
    week_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=STALE_STARTED_DAYS, minutes=1)
    with store.begin() as conn:
        conn.execute(
            catalog.backups.update()
            .where(catalog.backups.c.backup_id == "bk-old")
            .values(created_at=week_ago.isoformat())
        )
    assert [b["backup_id"] for b in expired_backups(store)] == ["bk-old"]
    store.dispose()
