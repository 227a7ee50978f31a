"""Subject group blocks (format version 7) on PostgreSQL + SeaweedFS: back up the small source with
its subjects' personal columns in group blocks (one subject per group here, so the rows of a table are
merged back from several blocks), shred one subject under Object Lock, restore, and check by
independent SQL that only that subject's personal columns became unreadable, that the old block is
still there but opens under no key left, and the bad input of `shred-subject`."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from dereg.backup import groupkeys
from dereg.backup.restore import restore_and_verify
from dereg.backup.subjectkeys import escrow_key, load_key_set_body
from dereg.errors import BackupError
from dereg.evidence import certificate_doc
from dereg.evidence.certificate import load_certificate, verify_certificate
from dereg.evidence.ledger import Ledger
from dereg.subjectshred import shred_subject
from tests.integration.backup.conftest import make_small_source
from tests.integration.backup.test_subject_keys import (
    _no_pdf,
    _spec,
    assert_only_the_subject_unreadable,
)

SHREDDED = 10  # the student whose values are shredded (李小龙, guardian 1); subject number 0


def _data_key(store, keyring, backup_id: str) -> bytes:
    import base64

    from dereg.backup import catalog

    kek_id, wrapped = catalog.wrapped_key(store, backup_id)
    return keyring.unwrap_data_key(kek_id, base64.b64decode(wrapped), what="the test's backup")


def test_one_subject_shredded_from_its_group_block_inside_a_locked_backup(
    pg_url, restored_db, take_backup, location, keyring, store, s3_client, monkeypatch, tmp_path
):
    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(certificate_doc, "render_pdf", _no_pdf)
    monkeypatch.setattr(groupkeys, "GROUP_SIZE", 1)  # two subjects, two groups
    planted = make_small_source(pg_url)
    record = take_backup(
        pg_url, company_id="school-gk", subjects=_spec(), object_lock=True, retention_days=30
    )
    manifest = json.loads(
        s3_client.get_object(Bucket=location.bucket, Key=record.manifest_key)["Body"].read()
    )
    entry = manifest["subject_keys"]
    assert manifest["version"] == 7 and entry["enabled"] is True and entry["scheme"] == groupkeys.SCHEME
    assert (entry["subjects"], entry["group_size"], entry["groups"]) == (2, 1, 2)
    assert manifest["tables"]["guardians"]["sealed"]["markers"] == {"name": "#shredded"}
    assert manifest["tables"]["payments"]["sealed"]["rows"] == 200  # payment 999 has no student
    # each group's block is locked like the chunks
    for key, _sha in entry["blocks"]:
        retention = s3_client.get_object_retention(Bucket=location.bucket, Key=key)["Retention"]
        assert retention["Mode"] == "COMPLIANCE"
    blob = b"".join(
        s3_client.get_object(Bucket=location.bucket, Key=o["Key"])["Body"].read()
        for o in s3_client.list_objects_v2(Bucket=location.bucket)["Contents"]
    )
    assert not any(v.encode() in blob for v in planted)

    # a reader written from docs/backup-format.md ("Subject group blocks") alone gives the plain rows
    data_key = _data_key(store, keyring, record.backup_id)
    for table in ("students", "guardians", "payments"):
        plain = _read_table_from_the_spec(s3_client, location.bucket, manifest, data_key, table)
        assert hashlib.sha256(plain).hexdigest() == manifest["tables"][table]["sha256"], table

    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert report.ok, report.problems
    assert not any("shredded" in w for w in report.warnings)

    # bad input: a ref that matches nothing changes and records nothing
    entries = len(Ledger(store).entries())
    body_before = load_key_set_body(store, s3_client, location, "school-gk", record.backup_id)
    with pytest.raises(BackupError, match="matches no subject"):
        shred_subject(
            store, location, keyring, company_id="school-gk", subject_ref="4242", signing_keyring=keyring
        )
    assert len(Ledger(store).entries()) == entries
    assert load_key_set_body(store, s3_client, location, "school-gk", record.backup_id) == body_before

    result = shred_subject(
        store, location, keyring, company_id="school-gk", subject_ref=str(SHREDDED), signing_keyring=keyring
    )
    done = result["backups"][0]
    assert done["backup_id"] == record.backup_id and (done["group"], done["group_generation"]) == (0, 1)
    cert = load_certificate(Path(result["certificate"]))
    assert verify_certificate(cert, store=store).ok
    # the ledger's head with this erasure's entry is anchored off-site beside the backup, and matches
    assert cert["body"]["ledger"]["checkpoints"] == f"s3://{location.bucket}/{location.prefix}"
    anchored = verify_certificate(cert, store=store, checkpoints=[location])
    assert anchored.ok, anchored.problems
    escrow = escrow_key(location, record.backup_id)
    assert len(s3_client.list_object_versions(Bucket=location.bucket, Prefix=escrow).get("Versions", [])) == 1
    # the old block is still there, locked; the key set holds only the new key of group 0, under which
    # the old block does not open, and the new block has no value of the subject
    data_key = _data_key(store, keyring, record.backup_id)
    key_set = groupkeys.GroupKeySet.from_json(
        load_key_set_body(store, s3_client, location, "school-gk", record.backup_id), data_key
    )
    old_key = entry["blocks"][0][0]
    old_blob = s3_client.get_object(Bucket=location.bucket, Key=old_key)["Body"].read()
    group = key_set.groups[0]
    assert group.block != old_key and group.shredded == [0] and key_set.groups[1].generation == 0
    with pytest.raises(BackupError, match="fails authentication"):
        groupkeys.open_block(group.key, old_blob, record.backup_id, 0, 0)
    with pytest.raises(Exception):  # noqa: B017 - Object Lock refuses whatever the error class
        versions = s3_client.list_object_versions(Bucket=location.bucket, Prefix=old_key)["Versions"]
        s3_client.delete_object(Bucket=location.bucket, Key=old_key, VersionId=versions[0]["VersionId"])
    new_blob = s3_client.get_object(Bucket=location.bucket, Key=group.block)["Body"].read()
    assert (
        s3_client.get_object_retention(Bucket=location.bucket, Key=group.block)["Retention"]["Mode"]
        == "COMPLIANCE"
    )
    _, frames = groupkeys.open_block(group.key, new_blob, record.backup_id, 0, 1)
    marks = {n: groupkeys.shredded_marks(t) for n, t in manifest["tables"].items() if t.get("sealed")}
    for name, (_count, frame) in frames.items():
        assert not any(v.encode() in groupkeys._decompress(frame) for v in planted)
        rows = [row for _, n, row, gone in groupkeys._entries(frame, frozenset([0])) if n == 0 and gone]
        assert rows and all(row.split(b"\t")[p] == v for row in rows for p, v in marks[name].items())
    # a retry (as after an interruption) finishes and changes nothing
    again = shred_subject(
        store, location, keyring, company_id="school-gk", subject_ref=str(SHREDDED), signing_keyring=keyring
    )
    assert (
        again["backups"][0]["key_was_already_gone"] is True and again["backups"][0]["group_generation"] == 1
    )

    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, into_url=restored_db
    )
    assert report.ok, report.problems
    assert report.tables["students"]["shredded_rows"] == 1
    assert report.tables["payments"]["shredded_rows"] == 100
    assert report.tables["guardians"]["shredded_rows"] == 1

    assert_only_the_subject_unreadable(pg_url, restored_db, manifest)


def test_a_tampered_group_block_is_refused(
    pg_url, take_backup, location, keyring, store, s3_client, monkeypatch
):
    monkeypatch.setattr(groupkeys, "GROUP_SIZE", 1)
    make_small_source(pg_url)
    record = take_backup(pg_url, company_id="school-gt", subjects=_spec())
    manifest = json.loads(
        s3_client.get_object(Bucket=location.bucket, Key=record.manifest_key)["Body"].read()
    )
    first, second = (k for k, _ in manifest["subject_keys"]["blocks"])
    # group 1's block put where group 0's is expected: its associated data names another group
    s3_client.put_object(
        Bucket=location.bucket,
        Key=first,
        Body=s3_client.get_object(Bucket=location.bucket, Key=second)["Body"].read(),
    )
    with pytest.raises(BackupError, match="group 0 .*fails authentication"):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)


def _another_shred_meanwhile(monkeypatch, store, location, keyring, *, company_id, subject_ref) -> list:
    """Make the next shred run another shred of `subject_ref` to its end while it rewrites its
    group (after reading the key set, before saving it). Returns a list that then holds the
    other shred's result."""
    rewrite = groupkeys.rewrite_group
    other: list = []

    def with_another_shred(key_set, ordinal, **kw):
        result = rewrite(key_set, ordinal, **kw)
        if not other:
            other.append(None)
            other[0] = shred_subject(
                store,
                location,
                keyring,
                company_id=company_id,
                subject_ref=subject_ref,
                signing_keyring=keyring,
            )
        return result

    monkeypatch.setattr(groupkeys, "rewrite_group", with_another_shred)
    return other


def _both_groups_shredded(store, keyring, s3_client, location, company_id: str, backup_id: str) -> list:
    """Both groups of a two-subject backup (a group each) show their shred in the saved key set
    (generation 1, one subject shredded), and a restore verifies with both subjects' rows shredded.
    Returns the groups."""
    data_key = _data_key(store, keyring, backup_id)
    groups = groupkeys.GroupKeySet.from_json(
        load_key_set_body(store, s3_client, location, company_id, backup_id), data_key
    ).groups
    assert [(g.generation, len(g.shredded)) for g in groups] == [(1, 1), (1, 1)]
    report = restore_and_verify(backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems
    assert report.tables["students"]["shredded_rows"] == 2
    return groups


def test_a_shred_that_another_shred_of_its_group_overtook_is_refused_and_loses_nothing(
    pg_url, take_backup, location, keyring, store, s3_client, monkeypatch, tmp_path
):
    # two shreds of one group at the same time: the one that saves its key set second must not
    # replace the group's key by one whose block still holds the first one's subject
    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(certificate_doc, "render_pdf", _no_pdf)
    make_small_source(pg_url)
    record = take_backup(
        pg_url, company_id="school-gr", subjects=_spec(), object_lock=True, retention_days=30
    )
    # meanwhile another run shreds the same subject and saves first
    overtaken = _another_shred_meanwhile(
        monkeypatch, store, location, keyring, company_id="school-gr", subject_ref=str(SHREDDED)
    )
    entries = len(Ledger(store).entries())
    with pytest.raises(BackupError, match="changed by another shred"):
        shred_subject(
            store,
            location,
            keyring,
            company_id="school-gr",
            subject_ref=str(SHREDDED),
            signing_keyring=keyring,
        )
    # the run that finished is recorded as done, the refused one as failed; the group's key is the
    # finished run's, not the refused run's
    assert [e.event for e in Ledger(store).entries()[entries:]] == ["succeeded", "failed"]
    data_key = _data_key(store, keyring, record.backup_id)
    group = groupkeys.GroupKeySet.from_json(
        load_key_set_body(store, s3_client, location, "school-gr", record.backup_id), data_key
    ).groups[0]
    assert group.generation == 1 and group.block == overtaken[0]["backups"][0]["group_block"]
    blocks = s3_client.list_objects_v2(Bucket=location.bucket, Prefix=group.block.rsplit("/", 1)[0] + "/")
    assert len([o for o in blocks["Contents"] if "/000001-" in o["Key"]]) == 2  # two names, none overwritten
    report = restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store)
    assert report.ok, report.problems
    assert report.tables["students"]["shredded_rows"] == 1


def test_a_shred_of_another_group_saved_meanwhile_is_kept(
    pg_url, take_backup, location, keyring, store, s3_client, monkeypatch, tmp_path
):
    # two shreds of one backup at the same time, in different groups: the one that saves its key
    # set second must not put back the other group's old key (whose block, kept by the lock, still
    # holds the other subject's values)
    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(certificate_doc, "render_pdf", _no_pdf)
    monkeypatch.setattr(groupkeys, "GROUP_SIZE", 1)  # every student a group of its own
    make_small_source(pg_url)
    record = take_backup(
        pg_url, company_id="school-g2", subjects=_spec(), object_lock=True, retention_days=30
    )
    # meanwhile another run shreds the other student, in another group, and saves first
    other = _another_shred_meanwhile(
        monkeypatch, store, location, keyring, company_id="school-g2", subject_ref="11"
    )
    entries = len(Ledger(store).entries())
    shred_subject(
        store, location, keyring, company_id="school-g2", subject_ref=str(SHREDDED), signing_keyring=keyring
    )
    assert [e.event for e in Ledger(store).entries()[entries:]] == ["succeeded", "succeeded"]
    groups = _both_groups_shredded(store, keyring, s3_client, location, "school-g2", record.backup_id)
    assert groups[1].block == other[0]["backups"][0]["group_block"]


@pytest.fixture
def store_url(request, tmp_path):
    """The compliance store: a SQLite file (as everywhere), or with the parameter "postgresql" or
    "mariadb" a database of its own on that server (dropped afterwards)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'compliance.db'}"
        return
    import uuid

    import sqlalchemy as sa

    from tests.conftest import MARIADB_ADMIN_URL, PG_ADMIN_URL

    admin_url = PG_ADMIN_URL if kind == "postgresql" else MARIADB_ADMIN_URL
    q = '"' if kind == "postgresql" else "`"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"dereg_store_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {q}{name}{q}")
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        force = " WITH (FORCE)" if kind == "postgresql" else ""
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {q}{name}{q}{force}")
    admin.dispose()


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_two_shreds_of_one_backup_take_turns_saving_its_key_set(
    pg_url, store_url, take_backup, location, keyring, store, s3_client, monkeypatch, tmp_path
):
    # two shreds of one backup, in different groups, at the same time: the one that saves second
    # must read the key set after the other saved it, else it puts back the other's old group key
    from dereg.backup import subjectkeys

    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(certificate_doc, "render_pdf", _no_pdf)
    monkeypatch.setattr(groupkeys, "GROUP_SIZE", 1)  # every student a group of its own
    make_small_source(pg_url)
    record = take_backup(
        pg_url, company_id="school-gt", subjects=_spec(), object_lock=True, retention_days=30
    )
    save, saving, other_done, outcome = subjectkeys.save_key_set, threading.Event(), threading.Event(), []

    def first_save_held(*args, **kwargs):
        if not saving.is_set():  # the first shred has read the key set again: the other one starts
            saving.set()
            other_done.wait(timeout=3)  # ... and, were there no turns, would save meanwhile
        return save(*args, **kwargs)

    def other_shred() -> None:
        saving.wait(timeout=60)
        try:
            outcome.append(
                shred_subject(
                    store,
                    location,
                    keyring,
                    company_id="school-gt",
                    subject_ref="11",
                    signing_keyring=keyring,
                )
            )
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcome.append(exc)
        finally:
            other_done.set()

    monkeypatch.setattr(subjectkeys, "save_key_set", first_save_held)
    other = threading.Thread(target=other_shred)
    other.start()
    shred_subject(
        store, location, keyring, company_id="school-gt", subject_ref=str(SHREDDED), signing_keyring=keyring
    )
    other.join(timeout=120)
    assert len(outcome) == 1 and isinstance(outcome[0], dict), outcome
    _both_groups_shredded(store, keyring, s3_client, location, "school-gt", record.backup_id)


def test_a_repeated_shred_keeps_a_shred_of_another_group_saved_meanwhile(
    pg_url, take_backup, location, keyring, store, s3_client, monkeypatch, tmp_path
):
    # running a shred again (to finish an interrupted one) finds its subject already shredded and
    # saves the key set as it is now, not as it read it first: another group's shred saved
    # meanwhile stays done
    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(certificate_doc, "render_pdf", _no_pdf)
    monkeypatch.setattr(groupkeys, "GROUP_SIZE", 1)
    make_small_source(pg_url)
    record = take_backup(
        pg_url, company_id="school-gr2", subjects=_spec(), object_lock=True, retention_days=30
    )

    def shred(ref: str):
        return shred_subject(
            store, location, keyring, company_id="school-gr2", subject_ref=ref, signing_keyring=keyring
        )

    shred(str(SHREDDED))
    other = _another_shred_meanwhile(
        monkeypatch, store, location, keyring, company_id="school-gr2", subject_ref="11"
    )
    again = shred(str(SHREDDED))
    assert again["backups"][0]["key_was_already_gone"] and other[0]["backups"][0]["group"] == 1
    _both_groups_shredded(store, keyring, s3_client, location, "school-gr2", record.backup_id)


def test_a_backup_that_fails_after_its_sealed_tables_leaves_no_group_writer_running(
    pg_url, take_backup, store, monkeypatch
):
    from dereg.backup import catalog, pgcopy

    monkeypatch.setattr(groupkeys, "GROUP_SIZE", 1)  # two groups: the writer is still at work
    make_small_source(pg_url)
    seal = groupkeys.seal_block

    def slow_seal(*args, **kwargs):  # still at work when the backup has failed and cleaned up
        time.sleep(3)
        return seal(*args, **kwargs)

    def fail(*args, **kwargs):  # every table is read, the group writer started: then the backup fails
        raise RuntimeError("reflection failed")

    monkeypatch.setattr(groupkeys, "seal_block", slow_seal)
    monkeypatch.setattr(pgcopy, "_describe_reflected", fail)
    with pytest.raises(BackupError, match="RuntimeError"):
        take_backup(pg_url, company_id="school-gf", subjects=_spec())
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("dereg-groups", "dereg-upload"))]
    with store.connect() as conn:
        states = [r.status for r in conn.execute(catalog.backups.select())]
    assert states == ["failed"]


@pytest.mark.parametrize("scheme", ["groups", "ggm"])  # version 7, and version 6 (still written)
def test_an_inheritance_parent_is_sealed_with_its_own_rows_only_as_a_plain_backup_stores_it(
    pg_url, take_backup, location, keyring, store, s3_client, scheme
):
    import sqlalchemy as sa

    make_small_source(pg_url)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        # a link whose text is not its COPY field (numeric): the sealed read adds it in front
        conn.exec_driver_sql("ALTER TABLE payments DROP CONSTRAINT payments_student_id_fkey")
        conn.exec_driver_sql("ALTER TABLE payments ALTER COLUMN student_id TYPE numeric")
        conn.exec_driver_sql("CREATE TABLE payments_2019 () INHERITS (payments)")
        conn.exec_driver_sql(
            "INSERT INTO payments_2019 (id, student_id, amount, memo) "
            "SELECT 5000 + i, 10 + i %% 2, i, 'old' FROM generate_series(1, 30) i"
        )
    engine.dispose()
    plain = take_backup(pg_url, run_id="plain")
    sealed = take_backup(pg_url, run_id="sealed", subjects=_spec(), subject_scheme=scheme)
    tables = {}
    for record in (plain, sealed):
        manifest = json.loads(
            s3_client.get_object(Bucket=location.bucket, Key=record.manifest_key)["Body"].read()
        )
        tables[record.backup_id] = manifest["tables"]
    ours, theirs = tables[sealed.backup_id], tables[plain.backup_id]
    assert ours["payments"]["sealed"]
    for name in ("payments", "payments_2019"):
        assert (ours[name]["rows"], ours[name]["sha256"]) == (theirs[name]["rows"], theirs[name]["sha256"])
    assert (ours["payments"]["rows"], ours["payments_2019"]["rows"]) == (201, 30)
    report = restore_and_verify(
        sealed.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert report.ok, report.problems


def test_small_sealed_tables_are_read_by_the_driver_with_the_copy_row_count_checked(
    pg_url, take_backup, monkeypatch
):
    from dereg.backup import pgcopy

    make_small_source(pg_url)
    started = []
    monkeypatch.setattr(pgcopy.PsqlCopy, "copy_out", lambda self, table, sql, raw: started.append(table))
    # a cut that loses count of a row: COPY's own count says so and the backup fails
    finish = groupkeys._GroupRouter.finish

    def miscounted(router) -> None:
        finish(router)
        if router.table == "payments":
            router.rows -= 1

    monkeypatch.setattr(groupkeys._GroupRouter, "finish", miscounted)
    with pytest.raises(BackupError, match="payments"):
        take_backup(pg_url, subjects=_spec())
    assert started == []  # no psql process for a table under PSQL_COPY_BYTES, sealed or not


def test_a_store_failure_during_shred_subject_is_a_clear_error_naming_the_store_and_the_step(
    pg_url, take_backup, location, keyring, store, s3_client, monkeypatch, tmp_path
):
    import dataclasses

    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    from dereg.backup import catalog
    from dereg.connections import S3Location
    from devtools.stack.ports import free_port

    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(certificate_doc, "render_pdf", _no_pdf)
    make_small_source(pg_url)
    record = take_backup(pg_url, company_id="school-gs", subjects=_spec())

    def shred(where):
        return shred_subject(
            store, where, keyring, company_id="school-gs", subject_ref=str(SHREDDED), signing_keyring=keyring
        )

    # an endpoint nobody listens on
    down = dataclasses.replace(
        location,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config_overrides=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(BackupError, match=r"unreachable while trying to read the manifest .* of backup bk-"):
        shred(down)
    # a bucket that is not there (the catalog's)
    with store.begin() as conn:
        conn.execute(
            catalog.backups.update()
            .where(catalog.backups.c.backup_id == record.backup_id)
            .values(bucket="dereg-no-such-bucket")
        )
    with pytest.raises(
        BackupError, match=r"s3://dereg-no-such-bucket/.* refused to read the manifest .*NoSuchBucket"
    ):
        shred(location)
    with store.begin() as conn:
        conn.execute(
            catalog.backups.update()
            .where(catalog.backups.c.backup_id == record.backup_id)
            .values(bucket=location.bucket)
        )
    # the store goes away halfway: the new block cannot be stored; recorded as failed, nothing changed
    make_client = S3Location.client

    class Failing:
        def __init__(self, client):
            self.client = client

        def __getattr__(self, name):
            return getattr(self.client, name)

        def put_object(self, **kwargs):
            raise EndpointConnectionError(endpoint_url=location.endpoint_url)

    monkeypatch.setattr(S3Location, "client", lambda self: Failing(make_client(self)))
    before = load_key_set_body(store, s3_client, location, "school-gs", record.backup_id)
    with pytest.raises(
        BackupError, match=r"unreachable while trying to store the new subject group block .*\.block"
    ):
        shred(location)
    assert Ledger(store).entries()[-1].event == "failed"
    assert load_key_set_body(store, s3_client, location, "school-gs", record.backup_id) == before


def test_a_sealer_that_cannot_read_the_subjects_fails_the_backup_while_plain_tables_were_read(
    pg_url, take_backup, monkeypatch
):
    # the subjects and link maps are read as the first job while the other connection reads a plain
    # table: their failure fails the backup (no sealed table waits for ever), attributed to them
    make_small_source(pg_url)

    def broken(self, cur, table_keys, columns_of, qualified=None):
        raise RuntimeError("subjects unreadable")

    monkeypatch.setattr(groupkeys.GroupSealer, "prepare", broken)
    with pytest.raises(BackupError, match=r"\(subject keys\) \(RuntimeError"):
        take_backup(pg_url, subjects=_spec())


def _read_table_from_the_spec(s3, bucket: str, manifest: dict, data_key: bytes, name: str) -> bytes:
    """Version 7 as the spec says: the group keys from their escrow object, each group's block opened
    and its sections of `name` read, merged by line number with the stored rows of no subject."""
    import base64

    import zstandard
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

    bid, version = manifest["backup_id"], manifest["version"]
    prefix = manifest["escrow_key"].rsplit("/_escrow/", 1)[0]
    body = json.loads(
        s3.get_object(Bucket=bucket, Key=f"{prefix}/_escrow/{bid}.subject-keys.json")["Body"].read()
    )
    assert body["format"] == "dereg-group-keys" and len(body["groups"]) == manifest["subject_keys"]["groups"]
    theirs: dict[int, bytes] = {}
    for group in body["groups"]:
        g, gen = group["group"], group["generation"]
        info = f"dereg-backup group-key|{bid}|{g}|{gen}".encode()
        key = aes_key_unwrap(
            HKDF(hashes.SHA256(), 32, None, info).derive(data_key), base64.b64decode(group["key"])
        )
        blob = s3.get_object(Bucket=bucket, Key=group["block"])["Body"].read()
        plaintext = AESGCM(key).decrypt(
            blob[:12], blob[12:], f"dereg-backup-group/{version}|{bid}|{g}|{gen}".encode()
        )
        head, _, rest = plaintext.partition(b"\n")
        at = 0
        for table in json.loads(head)["tables"]:
            frames = rest[at : at + table["bytes"]]
            at += table["bytes"]
            if table["name"] != name or not frames:
                continue
            text = zstandard.ZstdDecompressor().stream_reader(frames, read_across_frames=True).read()
            for line in text.split(b"\n")[:-1]:
                _n, number, row = line.split(b"\t", 2)
                theirs[int(number)] = row
    spec = manifest["tables"][name]
    stored = b""
    for i, key in enumerate(spec["chunks"]):
        blob = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        last = 1 if i == len(spec["chunks"]) - 1 else 0
        aad = f"dereg-backup/{version}|{bid}|{name}|{i}|{last}".encode()
        stored += zstandard.ZstdDecompressor().decompress(AESGCM(data_key).decrypt(blob[:12], blob[12:], aad))
    assert hashlib.sha256(stored).hexdigest() == spec["sealed_sha256"]
    assert len(theirs) == spec["sealed"]["rows"]
    others = iter(stored.split(b"\n")[:-1])
    return b"".join((theirs[i] if i in theirs else next(others)) + b"\n" for i in range(spec["rows"]))


PHOTO = 10 * 1024  # bytes of each added student's photo (random: neither TOAST nor zstd shrinks it)


def _add_students_with_photos(pg_url: str, count: int) -> None:
    import os

    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO students (id, guardian_id, name, photo) VALUES (:id, :g, :name, :photo)"),
            [
                {"id": 100 + i, "g": 1 + i % 2, "name": f"学生{i}", "photo": os.urandom(PHOTO)}
                for i in range(count)
            ],
        )
    engine.dispose()


def test_large_sealed_values_get_smaller_groups_and_still_restore_and_shred(
    pg_url, restored_db, take_backup, location, keyring, store, s3_client, monkeypatch, tmp_path
):
    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setattr(certificate_doc, "render_pdf", _no_pdf)
    target = 64 * 1024
    monkeypatch.setattr(groupkeys, "GROUP_BLOCK_TARGET", target)
    make_small_source(pg_url)
    _add_students_with_photos(pg_url, 60)  # about 600 KiB of photos: ten targets
    record = take_backup(pg_url, company_id="school-gm", subjects=_spec())
    manifest = json.loads(
        s3_client.get_object(Bucket=location.bucket, Key=record.manifest_key)["Body"].read()
    )
    entry = manifest["subject_keys"]
    size = entry["group_size"]
    # 62 subjects of about 10 KiB each: a few per group, not GROUP_SIZE (one group of all of them)
    assert entry["subjects"] == 62 and 1 <= size <= target // PHOTO
    assert entry["groups"] == -(-62 // size) > 1
    data_key = _data_key(store, keyring, record.backup_id)
    key_set = groupkeys.GroupKeySet.from_json(
        load_key_set_body(store, s3_client, location, "school-gm", record.backup_id), data_key
    )
    assert key_set.group_size == size
    # what the backup, a restore and a shred hold in memory for one block: its plaintext (header line
    # and compressed sections), under the target plus one subject's rows (a photo is hex in COPY text)
    largest = 0
    for group in key_set.groups:
        blob = s3_client.get_object(Bucket=location.bucket, Key=group.block)["Body"].read()
        header, frames = groupkeys.open_block(group.key, blob, record.backup_id, group.group, 0)
        largest = max(largest, len(blob) - groupkeys.NONCE_BYTES - 16)
        assert sum(e for e, _ in frames.values()) > 0
    assert PHOTO < largest <= target + 2 * PHOTO + 1024, largest

    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, scratch_url=pg_url
    )
    assert report.ok, report.problems

    result = shred_subject(
        store, location, keyring, company_id="school-gm", subject_ref="130", signing_keyring=keyring
    )
    done = result["backups"][0]
    assert (done["group"], done["group_generation"]) == (32 // size, 1)  # subject number 32: id 130
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, into_url=restored_db
    )
    assert report.ok, report.problems
    assert report.tables["students"]["shredded_rows"] == 1


def test_a_group_past_the_gcm_limit_fails_the_backup_naming_the_table(
    pg_url, take_backup, location, store, s3_client, monkeypatch
):
    from dereg.backup import catalog

    monkeypatch.setattr(groupkeys, "BLOCK_LIMIT", 16 * 1024)  # stands for AES-GCM's 2 GiB
    make_small_source(pg_url)
    _add_students_with_photos(pg_url, 8)  # one group (the target is far), 80 KiB of photos in it
    with pytest.raises(BackupError, match="with table students, more than one AES-256-GCM block") as failed:
        take_backup(pg_url, company_id="school-gm", subjects=_spec())
    assert "back up again" in str(failed.value) and "学生" not in str(failed.value)
    assert catalog.list_backups(store) == []
    [row] = catalog.list_backups(store, status="failed")
    assert "AES-256-GCM" in row["error"]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=location.bucket).get("Contents", [])]
    assert not any(k.endswith("manifest.json") for k in keys), keys
