"""An object source on real SeaweedFS: backed up, restored and verified, then erased down to every
version and delete marker, with locked versions reported instead of skipped."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dereg.backup.objects import backup_objects
from dereg.backup.restore import restore_and_verify
from dereg.classify.objects import ObjectInventory, classify_objects, inventory_objects
from dereg.connections import S3Location
from dereg.erase.objects import build_object_plan, erase_objects, verify_objects
from dereg.errors import KeyringError
from dereg.evidence.store import open_store
from dereg.keys import Keyring

pytestmark = pytest.mark.integration

MOBILE = "13812345678"
RESIDENT_ID = "11010519491231002X"
PERSON_KEY = "uploads/students/张伟-报名表.csv"  # a key that names a person
PHOTO = bytes(range(256)) * 4000  # ~1 MB: spans pieces and, with the rest, several chunks


@pytest.fixture
def store(store_url):
    engine = open_store(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def files(s3_client, bucket_name):
    """A versioned bucket: forms (overwritten twice), photos, a deleted file (delete marker left),
    and files outside the source's prefix that must survive."""
    s3_client.create_bucket(Bucket=bucket_name, ObjectLockEnabledForBucket=True)  # implies versioning
    for i in range(3):
        body = f"姓名,手机,身份证\n张伟,{MOBILE},{RESIDENT_ID}\n版本,{i},\n".encode()
        s3_client.put_object(Bucket=bucket_name, Key=PERSON_KEY, Body=body)
    for i in range(3):
        s3_client.put_object(Bucket=bucket_name, Key=f"uploads/photos/{i}.jpg", Body=PHOTO + bytes([i]))
    s3_client.put_object(Bucket=bucket_name, Key="uploads/empty.txt", Body=b"")
    s3_client.put_object(Bucket=bucket_name, Key="uploads/old/gone.txt", Body=f"tel {MOBILE}".encode())
    s3_client.delete_object(Bucket=bucket_name, Key="uploads/old/gone.txt")
    s3_client.put_object(Bucket=bucket_name, Key="catalog/product.jpg", Body=b"not a person")
    s3_client.put_object(Bucket=bucket_name, Key="uploads-archive/keep.txt", Body=b"other prefix")
    return bucket_name


@pytest.fixture
def backup_location(seaweed, s3_client) -> S3Location:
    bucket = "dereg-objbackup"
    try:
        s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    except s3_client.exceptions.BucketAlreadyOwnedByYou:
        pass
    return S3Location(
        seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket, "closures/o"
    )


def _backup(s3_client, files, location, keyring, store, run_id="run-1"):
    return backup_objects(
        s3_client,
        bucket=files,
        prefix="uploads",
        company_id="school-1",
        run_id=run_id,
        source_id="uploads",
        location=location,
        keyring=keyring,
        store=store,
        retention_days=1,
        object_lock=True,
    )


def test_object_backup_restores_exactly_keeps_keys_encrypted_and_catches_a_flipped_byte(
    s3_client, files, backup_location, keyring, store, tmp_path, capsys
):
    record = _backup(s3_client, files, backup_location, keyring, store)
    assert record.total_rows == 5  # the current objects under uploads/ (not the deleted one)
    assert _backup(s3_client, files, backup_location, keyring, store).reused

    report = restore_and_verify(record.backup_id, location=backup_location, keyring=keyring, store=store)
    assert report.ok, report.problems
    assert report.tables["objects"]["restored_rows"] == 5
    form = f"姓名,手机,身份证\n张伟,{MOBILE},{RESIDENT_ID}\n版本,2,\n".encode()  # the latest version
    assert report.tables["objects"]["restored_bytes"] == 3 * (len(PHOTO) + 1) + len(form)

    # Nothing in the backup bucket holds a key, a name or a number in clear; every object is locked.
    listing = s3_client.list_objects_v2(Bucket=backup_location.bucket, Prefix="closures/o/")["Contents"]
    for obj in listing:
        body = s3_client.get_object(Bucket=backup_location.bucket, Key=obj["Key"])["Body"].read()
        for secret in (PERSON_KEY, "张伟", MOBILE, RESIDENT_ID):
            assert secret.encode() not in body, obj["Key"]
    chunk = next(o["Key"] for o in listing if "/_content/" in o["Key"])
    assert s3_client.get_object_retention(Bucket=backup_location.bucket, Key=chunk)["Retention"]["Mode"] == (
        "COMPLIANCE"
    )
    with pytest.raises(s3_client.exceptions.ClientError):
        versions = s3_client.list_object_versions(Bucket=backup_location.bucket, Prefix=chunk)["Versions"]
        s3_client.delete_object(Bucket=backup_location.bucket, Key=chunk, VersionId=versions[0]["VersionId"])

    # A flipped byte in a content chunk, written as a newer version of the key the manifest names
    # (the locked original cannot be altered), is caught and named; no path or value leaks.
    manifest = json.loads(
        s3_client.get_object(Bucket=backup_location.bucket, Key=record.manifest_key)["Body"].read()
    )
    victim = manifest["tables"]["_content"]["chunks"][0]
    blob = bytearray(s3_client.get_object(Bucket=backup_location.bucket, Key=victim)["Body"].read())
    blob[40] ^= 0x01
    s3_client.put_object(Bucket=backup_location.bucket, Key=victim, Body=bytes(blob))
    bad = restore_and_verify(record.backup_id, location=backup_location, keyring=keyring, store=store)
    assert not bad.ok
    assert any("_content: chunk 0" in p and "fails authentication" in p for p in bad.problems), bad.problems
    text = json.dumps(bad.problems, ensure_ascii=False) + capsys.readouterr().out
    assert "张伟" not in text and MOBILE not in text

    # A wrong keyring is refused with a clear error.
    with pytest.raises(KeyringError):
        restore_and_verify(
            record.backup_id,
            location=backup_location,
            keyring=Keyring.create(tmp_path / "other-keyring.json"),
            store=store,
        )


def test_erasure_deletes_every_version_and_marker_and_reports_locked_ones(s3_client, files, seaweed):
    # one version under a compliance lock and one under a legal hold: nobody can delete them
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    s3_client.put_object(
        Bucket=files,
        Key="uploads/contracts/locked.txt",
        Body=f"身份证 {RESIDENT_ID}".encode(),
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )
    s3_client.put_object(
        Bucket=files, Key="uploads/contracts/held.txt", Body=b"x", ObjectLockLegalHoldStatus="ON"
    )
    before = s3_client.list_object_versions(Bucket=files, Prefix="uploads/")
    versions, markers = len(before["Versions"]), len(before.get("DeleteMarkers", []))
    assert versions == 3 + 3 + 1 + 1 + 2 and markers == 1

    inventory = inventory_objects(s3_client, "uploads", files, "uploads")
    found = classify_objects(s3_client, ObjectInventory.from_dict(inventory.to_dict()))
    plan = build_object_plan("school-1", inventory, found)
    assert plan.action == "delete" and plan.objects == 7 and plan.plan_hash == plan.compute_hash()
    assert "张伟" not in json.dumps(plan.to_dict(), ensure_ascii=False)

    progress: list[str] = []
    result = erase_objects(s3_client, files, "uploads", progress=progress.append)
    assert result.versions_deleted == versions - 2 and result.delete_markers_deleted == markers
    assert result.locked == 2 and result.legal_holds == 1
    assert result.locked_until[:10] == until.date().isoformat()
    assert result.failed == 0 and progress
    assert "张伟" not in json.dumps(result.to_dict(), ensure_ascii=False) + "".join(progress)

    checked = verify_objects(s3_client, files, "uploads")
    assert checked["ok"], checked
    assert checked["remaining"] == {"versions": 2, "delete_markers": 0, "locked": 2, "unlocked": 0}
    # the rest of the bucket is untouched, including a sibling prefix that starts with the same word
    left = {o["Key"] for o in s3_client.list_objects_v2(Bucket=files)["Contents"]}
    assert {"catalog/product.jpg", "uploads-archive/keep.txt"} <= left

    # running it again (a retry after a crash) deletes nothing more and still reports the locks
    again = erase_objects(s3_client, files, "uploads")
    assert (again.versions_deleted, again.delete_markers_deleted, again.locked) == (0, 0, 2)


def test_verification_fails_when_an_unlocked_version_is_left(s3_client, files):
    erase_objects(s3_client, files, "uploads")
    s3_client.put_object(Bucket=files, Key="uploads/late/upload.csv", Body=f"{MOBILE}".encode())
    checked = verify_objects(s3_client, files, "uploads")
    assert not checked["ok"] and checked["remaining"]["unlocked"] == 1
    assert "1 unlocked version(s)" in checked["problems"][0] and "upload.csv" not in checked["problems"][0]
