"""`dereg shred-subject`: one customer crypto-shredded inside backups that are still locked.

For every complete database backup of the company that has per-subject keys (format version 5,
`subject_keys.enabled`), the subject's ref is looked up in the backup's `_subjects` stream (sealed
under the data key); the backup's key set is punctured at that subject's leaf (the covering GGM node
replaced by its co-path, see `backup/subjectkeys.py`), written back to the compliance store and as a
new escrow version, and every older version of the escrow object is deleted. A version 7 backup
(`backup/groupkeys.py`) has a key per subject group instead: the group's block is written again
without the subject's sealed values under a new group key, then the old key is replaced the same way. Listing and reading
both copies again must show the leaf gone before the erasure is recorded: a ledger entry (stage
`shred_subject`) and a signed certificate for that one erasure.

Two shreds of one backup at the same time take turns where they read the key set (again), save
it and read it back (`_key_set_turn`: one transaction of the compliance store, under a lock named
after the backup), so the second to save always starts from the first's key set.

Bad input fails before anything changes: a ref that matches no subject, a company whose backups
predate per-subject keys (the refusal says what is possible instead). A run interrupted halfway is
finished by running it again: puncturing is idempotent, and the escrow is rewritten from the store.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from dereg import config
from dereg.errors import BackupError

GROUP_SCHEME = "group-blocks/zstd/aes-256-gcm"  # groupkeys.SCHEME (not imported: cli start-up)
STAGE = "shred_subject"
ACTOR = "dereg shred-subject"
RESIDUAL_RISKS = [
    "the subject's sealed rows stay in the locked backup as ciphertext until its retention ends; no copy "
    "of their key is left, so nobody can decrypt them",
    "the subject's ref (a primary key value, not personal data) stays readable in the backup's sealed "
    "subject list and in this certificate",
    "a compliance store on SQLite or PostgreSQL may keep the replaced key set in free pages or dead rows "
    "until they are reused or vacuumed; the escrow object's old versions are deleted",
    "rows the subject shares with others (a row sealed under another subject's key) are not erased "
    "by this shred",
    "in a version 7 backup the subject's group block of before the shred stays locked as ciphertext; its "
    "group key is destroyed in every copy, and the bucket shows which group was written again",
]


@contextlib.contextmanager
def _s3(where, doing: str) -> Iterator[None]:
    """A store's error (refused, unreachable) while `doing` becomes a BackupError naming the store,
    what was being done and what to check (`writer.s3_error`), not a botocore traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    from dereg.backup.writer import s3_error

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise s3_error(where, exc, doing) from None


@contextlib.contextmanager
def _key_set_turn(store, backup_id: str) -> Iterator[Any]:
    """A transaction of the compliance store in which a shred reads a backup's key set (again),
    saves it and reads it back: two shreds of one backup take turns there, so that neither saves a
    key set read before the other saved its own (which would put back the key the other destroyed).
    PostgreSQL: an advisory lock to the transaction's end; MySQL/MariaDB: a named lock (GET_LOCK)
    released after it; SQLite: the write lock its store transactions take at BEGIN. Yields the
    connection to read and write the key set on."""
    from dereg.dialects import dialect_for

    name = f"dereg-key-set|{backup_id}"
    with store.connect() as conn:
        dialect = dialect_for(conn)
        try:
            with conn.begin():
                dialect.lock_name(conn, name)
                yield conn
        finally:
            dialect.unlock_name(conn, name)


def _backup_context(store, location, keyring, record: dict[str, Any]) -> dict[str, Any]:
    """The backup's manifest (authenticated), data key and client."""
    from dereg.backup import catalog
    from dereg.backup.restore import _get, _wrapped_key, authenticate_manifest

    where = catalog._at(location, record["bucket"], record["prefix"])
    client = where.client()
    with _s3(where, f"read the manifest {record['manifest_key']} of backup {record['backup_id']}"):
        manifest = json.loads(_get(client, where, record["manifest_key"]))
    kek_id, wrapped = _wrapped_key(record["backup_id"], store, client, where)
    data_key = keyring.unwrap_data_key(kek_id, wrapped, what=f"the data key of backup {record['backup_id']}")
    authenticate_manifest(manifest, data_key, manifest_key=record["manifest_key"])
    return {"where": where, "client": client, "manifest": manifest, "data_key": data_key}


def _escrow_versions(client, bucket: str, key: str) -> list[dict]:
    found = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        found += [v for v in page.get("Versions", []) + page.get("DeleteMarkers", []) if v["Key"] == key]
    return found


def _covered(key_set, leaf: int) -> bool:
    return any(leaf >> (key_set.depth - lv) == ix for lv, ix, _ in key_set.nodes)


def _key_set_body(store, ctx: dict[str, Any], company_id: str, what: str) -> dict[str, Any]:
    """The backup's wrapped key set (store, else escrow); BackupError when neither copy exists
    (`what`: the key set's name and verb, for the message)."""
    from dereg.backup import subjectkeys

    backup_id = ctx["manifest"]["backup_id"]
    with _s3(ctx["where"], f"read the escrowed key set of backup {backup_id}"):
        body = subjectkeys.load_key_set_body(store, ctx["client"], ctx["where"], company_id, backup_id)
    if body is None:
        raise BackupError(
            f"backup {backup_id}: its {what} neither in the compliance store nor in escrow "
            "(the backup was crypto-shredded whole?): there is no key left to destroy"
        )
    return body


def puncture_backup(store, ctx: dict[str, Any], company_id: str, ordinal: int) -> dict[str, Any]:
    """Destroy one subject key of one backup in every copy; verified by reading both copies back."""
    from dereg.backup import subjectkeys

    where, manifest, data_key = ctx["where"], ctx["manifest"], ctx["data_key"]
    with _key_set_turn(store, manifest["backup_id"]) as conn:
        key_set = subjectkeys.KeySet.from_json(
            _key_set_body(conn, ctx, company_id, "subject key set is"), data_key
        )
        punctured = subjectkeys.puncture(key_set.nodes, key_set.depth, ordinal)
        already = punctured is None
        if not already:
            key_set.nodes = punctured
            key_set.shredded += 1
        deleted, problems = _replace_key_set(
            conn,
            ctx,
            company_id,
            key_set,
            lambda copy: _covered(subjectkeys.KeySet.from_json(copy, data_key), ordinal),
            "a copy of the key set still covers the subject's key",
        )
    _refuse_unless_gone(manifest["backup_id"], problems)
    return _shredded_in(manifest, where, key_was_already_gone=already, escrow_versions_deleted=deleted)


def rewrite_group_backup(store, ctx: dict[str, Any], company_id: str, ordinal: int) -> dict[str, Any]:
    """Version 7: write the subject's group block again without its values under a new group key
    (locked like the backup), then replace the group key in every copy of the key set, so the old
    block, which the lock keeps, can no longer be decrypted; verified by reading both copies back."""
    from dereg.backup import groupkeys, subjectkeys

    where, client, manifest, data_key = ctx["where"], ctx["client"], ctx["manifest"], ctx["data_key"]
    backup_id = manifest["backup_id"]
    key_set = groupkeys.GroupKeySet.from_json(
        _key_set_body(store, ctx, company_id, "subject group keys are"), data_key
    )
    entry = manifest["subject_keys"]
    if (key_set.group_size, key_set.subjects) != (entry.get("group_size"), entry.get("subjects")):
        # the subject's group is its number // group_size: a size from elsewhere would pick another group
        raise BackupError(
            f"backup {backup_id}: its subject group keys and its manifest disagree on the group size or the "
            "number of subjects (one of them was altered or belongs to another backup); nothing was shredded"
        )
    retain_until = dt.datetime.fromisoformat(manifest["retain_until"])
    lock = (
        {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until}
        if manifest.get("object_lock") and retain_until > dt.datetime.now(dt.UTC)
        else {}
    )

    def get(key: str) -> bytes:
        with _s3(where, f"read the subject group block {key} of backup {backup_id}"):
            return client.get_object(Bucket=where.bucket, Key=key)["Body"].read()

    def put(key: str, blob: bytes) -> None:
        with _s3(where, f"store the new subject group block {key} of backup {backup_id}"):
            client.put_object(Bucket=where.bucket, Key=key, Body=blob, **lock)

    marks = {name: groupkeys.shredded_marks(t) for name, t in manifest["tables"].items() if t.get("sealed")}
    group, old = groupkeys.rewrite_group(key_set, ordinal, get=get, put=put, location=where, marks=marks)

    def still_holds(copy: dict[str, Any]) -> bool:
        now = groupkeys.GroupKeySet.from_json(copy, data_key).groups[group.group]
        return ordinal not in now.shredded or (old is not None and now.key == old.key)

    with _key_set_turn(store, backup_id) as conn:
        # other shreds may have saved the key set since it was read above: of this group (saving
        # ours would undo theirs: refused), or of other groups (theirs are kept: what is saved is
        # the key set as it is now, which no other shred can change before this one has saved it
        # and read it back, with only this group's entry replaced, or nothing replaced when the
        # subject was already shredded, as when a run is repeated to finish an interrupted one)
        with _s3(where, f"read the escrowed key set of backup {backup_id} again"):
            now = subjectkeys.load_key_set_body(conn, client, where, company_id, backup_id)
        fresh = groupkeys.GroupKeySet.from_json(now, data_key) if now else None
        current = fresh.groups[group.group] if fresh else None
        if current is None or (
            (current.generation, current.key) != (old.generation, old.key)
            if old is not None
            else ordinal not in current.shredded
        ):
            raise BackupError(
                f"backup {backup_id}: subject group {group.group} was changed by another shred while this "
                "one ran; the subject is NOT recorded as shredded: run again (one shred at a time per company)"
            )
        if old is not None:
            fresh.groups[group.group] = group
        key_set = fresh
        deleted, problems = _replace_key_set(
            conn,
            ctx,
            company_id,
            key_set,
            still_holds,
            "a copy of the key set still holds the group's old key",
        )
    _refuse_unless_gone(backup_id, problems)
    return _shredded_in(
        manifest,
        where,
        key_was_already_gone=old is None,
        escrow_versions_deleted=deleted,
        group=group.group,
        group_block=group.block,
        group_generation=group.generation,
    )


def _replace_key_set(
    conn, ctx: dict[str, Any], company_id: str, key_set, still_holds, what: str
) -> tuple[int, list[str]]:
    """Save `key_set` (its `to_json` under the data key) to the store (on `conn`, in its
    `_key_set_turn`) and as the only escrow version, then read both copies back. Returns the
    number of older escrow versions deleted and the problems: `what` for each copy that
    `still_holds` what was destroyed (`_refuse_unless_gone` raises them once the turn's saves are
    committed)."""
    from dereg.backup import subjectkeys

    where, client, manifest = ctx["where"], ctx["client"], ctx["manifest"]
    backup_id = manifest["backup_id"]
    escrow = subjectkeys.escrow_key(where, backup_id)
    with _s3(where, f"store the new key set of backup {backup_id} as {escrow}"):
        keep = subjectkeys.save_key_set(conn, where, client, company_id, key_set, ctx["data_key"]) or "null"
    deleted, problems = _keep_only(client, where, backup_id, keep)
    with _s3(where, f"read back the key set of backup {backup_id} ({escrow})"):
        copies = (
            subjectkeys.load_key_set_body(conn, client, where, company_id, backup_id),
            json.loads(client.get_object(Bucket=where.bucket, Key=escrow)["Body"].read()),
        )
    for copy in copies:
        if still_holds(copy):
            problems.append(what)
    return deleted, problems


def _refuse_unless_gone(backup_id: str, problems: list[str]) -> None:
    if problems:
        raise BackupError(
            f"backup {backup_id}: "
            + "; ".join(problems)
            + ". The subject is NOT recorded as shredded; run again."
        )


def _shredded_in(manifest: dict[str, Any], where, **outcome: Any) -> dict[str, Any]:
    """What a shred did to one backup, for the ledger and the certificate."""
    return {
        "backup_id": manifest["backup_id"],
        "source_id": manifest.get("source_id"),
        "bucket": where.bucket,
        "retain_until": manifest.get("retain_until"),
        **outcome,
        "sealed_tables": sorted(n for n, t in manifest["tables"].items() if t.get("sealed")),
    }


def _keep_only(client, where, backup_id: str, keep: str) -> tuple[int, list[str]]:
    """Delete every version of the key set's escrow object but `keep`; (versions deleted, problems)."""
    from botocore.exceptions import ClientError

    from dereg.backup import subjectkeys

    escrow = subjectkeys.escrow_key(where, backup_id)
    deleted = 0
    with _s3(where, f"list the versions of {escrow}"):
        versions = _escrow_versions(client, where.bucket, escrow)
    for version in versions:
        if version["VersionId"] == keep:
            continue
        with _s3(where, f"delete an older version of {escrow} (the subject key is NOT destroyed yet)"):
            try:
                client.delete_object(Bucket=where.bucket, Key=escrow, VersionId=version["VersionId"])
            except ClientError as exc:
                raise BackupError(
                    f"an older version of {escrow} cannot be deleted ({exc.response['Error'].get('Code')}): a "
                    "default retention may lock the _escrow prefix. The subject key is NOT destroyed yet; "
                    "remove that retention and run again."
                ) from None
        deleted += 1
    with _s3(where, f"list the versions of {escrow} again"):
        left = _escrow_versions(client, where.bucket, escrow)
    problems = []
    if [v["VersionId"] for v in left] != [keep]:
        problems.append(f"{len(left)} version(s) of {escrow} remain, expected only the new one")
    return deleted, problems


def _refusal(company_id: str, old: list[dict[str, Any]]) -> BackupError:
    lines = [
        f"  - {b['backup_id']} ({b['source_id']}): {why}; retained until {b.get('retain_until')}"
        for b, why in old
    ]
    return BackupError(
        f"no backup of {company_id} has per-subject keys, so one customer cannot be shredded inside it:\n"
        + "\n".join(lines)
        + "\nWhat is possible instead: wait for the retention to end (the retention_sweep DAG destroys the "
        "backup then), or, once retain_until has passed, crypto-shred the whole backup with "
        "`dereg shred --from s3://BUCKET/PREFIX BACKUP_ID --yes`. Nothing was changed or recorded."
    )


def shred_subject(
    store, location, keyring, *, company_id: str, subject_ref: str, signing_keyring=None, progress=None
) -> dict[str, Any]:
    """Destroy `subject_ref`'s key in every backup of `company_id` that has per-subject keys; record it
    in the ledger and issue its certificate. Returns what was done and where the certificate is."""
    from dereg.backup import catalog, subjectkeys
    from dereg.evidence.certificate import sign_certificate, write_certificate
    from dereg.evidence.ledger import Ledger

    records = [b for b in catalog.list_backups(store, status="complete") if b["company_id"] == company_id]
    if not records:
        raise BackupError(
            f"company {company_id} has no complete backup in the catalog (run `dereg catalog rebuild` if the "
            "compliance store was lost). Nothing was changed or recorded."
        )
    ref = subject_ref.encode()
    matched, old, searched = [], [], 0
    for record in records:
        ctx = _backup_context(store, location, keyring, record)
        manifest = ctx["manifest"]
        if manifest.get("kind") == "objects":
            continue
        why = without_subject_keys(manifest)
        if why:
            old.append((record, why))
            continue
        searched += 1
        with _s3(ctx["where"], f"read the subject list of backup {manifest['backup_id']}"):
            refs = subjectkeys.read_subject_refs(
                manifest,
                ctx["data_key"],
                lambda k, c=ctx: c["client"].get_object(Bucket=c["where"].bucket, Key=k)["Body"].read(),
            )
        ordinal = _find(refs, ref)
        if ordinal is not None:
            matched.append((ctx, ordinal))
    if not searched:
        raise _refusal(company_id, old)
    if not matched:
        raise BackupError(
            f"subject ref {subject_ref!r} matches no subject in the {searched} backup(s) of {company_id} with "
            "per-subject keys (the ref is the subject table's key value as text, e.g. 42). Nothing was "
            "changed or recorded."
        )
    ledger = Ledger(store)
    run_id = f"shred-subject-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{hashlib.sha256(ref).hexdigest()[:8]}"
    done, failed = [], None
    try:
        for ctx, ordinal in matched:
            grouped = ctx["manifest"]["subject_keys"].get("scheme") == GROUP_SCHEME
            done.append(
                (rewrite_group_backup if grouped else puncture_backup)(store, ctx, company_id, ordinal)
            )
            if progress:
                progress(
                    f"backup {done[-1]['backup_id']}: the key of subject {subject_ref} destroyed in every copy"
                )
    except BaseException as exc:
        failed = exc
        raise
    finally:
        details = {
            "subject_ref": subject_ref,
            "backups": done,
            "backups_without_subject_keys": [r["backup_id"] for r, _ in old],
            **(
                {"error": str(failed)[:300] if isinstance(failed, BackupError) else type(failed).__name__}
                if failed
                else {}
            ),
        }
        entry = ledger.append(
            company_id=company_id,
            run_id=run_id,
            stage=STAGE,
            event="failed" if failed else "succeeded",
            actor=ACTOR,
            details=details,
        )
    from dereg.evidence.checkpoints import anchor_certificate_ledger
    from dereg.keys import Keyring

    signer = signing_keyring or Keyring.load()
    # the ledger's head, with this erasure's entry, anchored off-site beside the first backup shredded
    first = matched[0][0]
    checkpoints = anchor_certificate_ledger(
        store,
        first["where"],
        signer,
        company_id=company_id,
        run_id=run_id,
        stage=STAGE,
        object_lock=bool(first["manifest"].get("object_lock")),
        warn=progress,
    )
    cert = _certificate(company_id, subject_ref, done, old, entry, ledger, run_id, checkpoints)
    signed = sign_certificate(cert, signer)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in run_id)
    json_path, html_path = write_certificate(
        signed, config.output_dir() / company_id / safe, "subject-shred-certificate"
    )
    from dereg.evidence.artifacts import put_artifact

    put_artifact(store, company_id, run_id, STAGE, signed)
    return {
        "company_id": company_id,
        "subject_ref": subject_ref,
        "backups": done,
        "without_subject_keys": [(r["backup_id"], why) for r, why in old],
        "ledger_entry": entry.entry_id,
        "certificate": str(json_path),
        "html": str(html_path),
        "run_id": run_id,
    }


def without_subject_keys(manifest: dict[str, Any]) -> str | None:
    """Why a backup's manifest gives no per-subject keys to shred, or None when it has them."""
    entry = manifest.get("subject_keys") or {}
    if not entry.get("enabled"):
        return entry.get("reason") or f"a version {manifest.get('version')} backup (before per-subject keys)"
    if not any((t or {}).get("sealed") for t in (manifest.get("tables") or {}).values()):
        # a MariaDB/MySQL or SQLite backup given a plan before that was recorded as "no keys": it says
        # enabled, but no table went through the sealing COPY path
        return "no table of it is sealed (its rows were not read through the PostgreSQL COPY path)"
    return None


def done_message(result: dict[str, Any]) -> str:
    """What `shred_subject` did, for a person: a repeated run (the key was already gone in a backup)
    says so rather than claiming a new erasure."""
    backups = result["backups"]
    fresh = [b["backup_id"] for b in backups if not b.get("key_was_already_gone")]
    again = [b["backup_id"] for b in backups if b.get("key_was_already_gone")]
    parts = []
    if fresh:
        parts.append(f"crypto-shredded in {len(fresh)} backup(s) ({', '.join(fresh)})")
    if again:
        parts.append(
            f"already shredded before in {len(again)} backup(s) ({', '.join(again)}): checked again, "
            "every copy of its key is gone"
        )
    return (
        f"subject {result['subject_ref']} of {result['company_id']} "
        + "; ".join(parts or ["in no backup"])
        + f"; ledger entry {result['ledger_entry']}; certificate {result['certificate']}"
    )


def _find(refs: list[bytes], ref: bytes) -> int | None:
    for n, r in enumerate(refs):
        if r == ref:
            return n
    return None


def _certificate(
    company_id, subject_ref, done, old, entry, ledger, run_id, checkpoints=None
) -> dict[str, Any]:
    head = ledger.head()
    now = dt.datetime.now(dt.UTC).isoformat()
    return {
        "title": "Certificate of one subject's erasure from locked backups / 单个个人信息主体的备份删除证明",
        "kind": "subject_shred",
        "dry_run": False,
        "company": {"id": company_id},
        "subject_ref": subject_ref,
        "statement": (
            f"Every copy of the key of subject {subject_ref} in the backups listed was destroyed (the key set "
            "in the compliance store replaced and every older escrow version deleted): the subject's "
            "personal columns in those backups can no longer be decrypted, although the backups stay "
            "under Object Lock until their retention ends. Every other subject's rows are unchanged."
        ),
        "backups_shredded_for_subject": done,
        "backups_without_subject_keys": [
            {"backup_id": r["backup_id"], "reason": why, "retain_until": r.get("retain_until")}
            for r, why in old
        ],
        "residual_risks": list(RESIDUAL_RISKS),
        "run_id": run_id,
        "operator": ACTOR,
        "approver": None,
        "started_at": now,
        "finished_at": now,
        "stores": [],
        "backup_kept": [],
        "method": "crypto-shredding of one per-subject key (version 5 and 6: GGM key set punctured; version 7: "
        "the subject's group block written again without its values under a new group key and the old group "
        "key destroyed), escrow versions deleted",
        "verification_method": "escrow versions listed again; both copies of the key set read back, unwrapped "
        "and checked not to cover the subject's key",
        "verification_result": "passed",
        "ledger": {
            "head_hash": head.hash if head else None,
            "entries": [{"entry_id": entry.entry_id, "hash": entry.hash, "stage": STAGE}],
            # where its signed checkpoint is (dereg verify-certificate --checkpoints); none if not written
            **({"checkpoints": checkpoints} if checkpoints else {}),
        },
    }
