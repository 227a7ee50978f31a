"""The backup catalog in the compliance store: each backup, its status, and its wrapped data key.

A backup is `complete` only once every object is uploaded and its lock read back. The wrapped
data key lives here (and in an escrow object), never beside the ciphertext: destroying both
copies makes the backup unreadable even while Object Lock keeps the ciphertext (crypto-shredding).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.errors import BackupError
from dereg.evidence.artifacts import artifacts
from dereg.evidence.store import metadata

backups = sa.Table(
    "backups",
    metadata,
    sa.Column("backup_id", sa.String(64), primary_key=True),
    sa.Column("company_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("source_id", sa.String(64), nullable=False),
    sa.Column("bucket", sa.String(255), nullable=False),
    sa.Column("prefix", sa.String(500), nullable=False),
    sa.Column("manifest_key", sa.String(800), nullable=False),
    # started | complete | failed | shredded (key destroyed) | abandoned (an attempt that never completed,
    # key destroyed) | destroyed (key and every object gone)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("tables_json", sa.Text, nullable=False, default="{}"),
    sa.Column("total_rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("retain_until", sa.String(40)),
    sa.Column("object_lock", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("completed_at", sa.String(40)),
)

backup_keys = sa.Table(
    "backup_keys",
    metadata,
    sa.Column("backup_id", sa.String(64), primary_key=True),
    sa.Column("kek_id", sa.String(255), nullable=False),  # a keyring KEK id, or kms:<key ARN>
    sa.Column("wrapped_key", sa.Text, nullable=False),  # base64 of the wrapped data key (AES-KW or KMS)
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("destroyed_at", sa.String(40)),
)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def start(
    store: Engine,
    *,
    backup_id: str,
    company_id: str,
    run_id: str,
    source_id: str,
    bucket: str,
    prefix: str,
    manifest_key: str,
    object_lock: bool,
    kek_id: str,
    wrapped_key: str,
) -> None:
    with store.begin() as conn:
        conn.execute(
            backups.insert().values(
                backup_id=backup_id,
                company_id=company_id,
                run_id=run_id,
                source_id=source_id,
                bucket=bucket,
                prefix=prefix,
                manifest_key=manifest_key,
                status="started",
                tables_json="{}",
                total_rows=0,
                object_lock=object_lock,
                created_at=_now(),
            )
        )
        conn.execute(
            backup_keys.insert().values(
                backup_id=backup_id, kek_id=kek_id, wrapped_key=wrapped_key, created_at=_now()
            )
        )


def complete(
    store: Engine, backup_id: str, *, tables: dict[str, Any], total_rows: int, retain_until: str
) -> None:
    with store.begin() as conn:
        conn.execute(
            backups.update()
            .where(backups.c.backup_id == backup_id)
            .values(
                status="complete",
                tables_json=json.dumps(tables, sort_keys=True),
                total_rows=total_rows,
                retain_until=retain_until,
                completed_at=_now(),
            )
        )


def fail(store: Engine, backup_id: str, error: str) -> None:
    with store.begin() as conn:
        conn.execute(
            backups.update().where(backups.c.backup_id == backup_id).values(status="failed", error=error)
        )


def get(store: Engine, backup_id: str) -> dict[str, Any] | None:
    with store.connect() as conn:
        row = conn.execute(sa.select(backups).where(backups.c.backup_id == backup_id)).mappings().first()
    return dict(row) if row else None


def _latest(
    store: Engine, company_id: str, run_id: str, source_id: str, status: str
) -> dict[str, Any] | None:
    query = (
        sa.select(backups)
        .where(
            backups.c.company_id == company_id,
            backups.c.run_id == run_id,
            backups.c.source_id == source_id,
            backups.c.status == status,
        )
        .order_by(backups.c.created_at.desc())
        .limit(1)
    )
    with store.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def find_complete(store: Engine, company_id: str, run_id: str, source_id: str) -> dict[str, Any] | None:
    """The latest complete backup of this run and source."""
    return _latest(store, company_id, run_id, source_id, "complete")


def find_in_progress(store: Engine, company_id: str, run_id: str, source_id: str) -> dict[str, Any] | None:
    """The latest backup of this run and source still `started` (being written in parts)."""
    return _latest(store, company_id, run_id, source_id, "started")


def wrapped_key(store: Engine, backup_id: str) -> tuple[str, str] | None:
    with store.connect() as conn:
        row = conn.execute(
            sa.select(backup_keys.c.kek_id, backup_keys.c.wrapped_key).where(
                backup_keys.c.backup_id == backup_id,
                backup_keys.c.destroyed_at.is_(None),
                backup_keys.c.wrapped_key != "",
            )
        ).first()
    return (row.kek_id, row.wrapped_key) if row else None


def task_ref(record: dict[str, Any]) -> dict[str, Any]:
    """What a mapped task of the drill or the sweep gets of a catalog row (ids and places, no key),
    with the label the Airflow grid shows."""
    return {
        "backup_id": record["backup_id"],
        "company_id": record["company_id"],
        "source_id": record["source_id"],
        "bucket": record["bucket"],
        "prefix": record["prefix"],
        "retain_until": record.get("retain_until"),
        "status": record["status"],
        "label": f"{record['company_id']}.{record['source_id']} {record['backup_id']}",
    }


def set_status(store: Engine, backup_id: str, status: str) -> None:
    """Record a later state of a backup: `destroyed` once its key is shredded and no object is left."""
    with store.begin() as conn:
        conn.execute(backups.update().where(backups.c.backup_id == backup_id).values(status=status))


def list_backups(store: Engine, *, status: str | None = "complete") -> list[dict[str, Any]]:
    query = sa.select(backups).order_by(backups.c.created_at)
    if status:
        query = query.where(backups.c.status == status)
    with store.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def _authentic(manifest: dict, escrow: dict, keyring, key: str, progress) -> bool:
    """Whether a manifest read back from the store may be catalogued: a version 3 manifest's MAC
    must verify under its data key (unwrapped from the escrow copy with `keyring`); an older one,
    or any without a keyring, is catalogued with a warning that it is unauthenticated."""
    from dereg.backup.codec import MAC_VERSION, manifest_is_authentic

    backup_id = manifest.get("backup_id")
    if keyring is None or not isinstance(manifest.get("version"), int) or manifest["version"] < MAC_VERSION:
        if progress:
            progress(
                f"WARNING: the manifest {key} of backup {backup_id} is catalogued unauthenticated "
                f"(version {manifest.get('version')}{'' if keyring is not None else ', no keyring'})"
            )
        return True
    import base64

    data_key = keyring.unwrap_data_key(
        escrow["kek_id"], base64.b64decode(escrow["wrapped_key"]), what=f"the data key of backup {backup_id}"
    )
    if manifest_is_authentic(data_key, manifest):
        return True
    if progress:
        progress(
            f"REFUSED: the manifest {key} of backup {backup_id} fails authentication (altered in the "
            "store); not catalogued"
        )
    return False


def rebuild(store: Engine, location, *, keyring=None, progress=None) -> dict[str, int]:
    """Rebuild the catalog from the off-site store alone: every `<prefix>/<backup id>/manifest.json`
    is a complete backup (the manifest is written last, so an interrupted backup has none). Its
    wrapped data key comes from the escrow copy; a backup whose escrow copy is gone was
    crypto-shredded and is recorded as `shredded`. With `keyring`, a version 3 manifest whose MAC
    fails is refused (counted, not catalogued). Backups the catalog already has are left as they are.
    Returns counts: found, added, known, shredded, refused."""
    client = location.client()
    counts = {"found": 0, "added": 0, "known": 0, "shredded": 0, "refused": 0}
    paginator = client.get_paginator("list_objects_v2")
    prefix = f"{location.prefix}/" if location.prefix else ""
    for page in paginator.paginate(Bucket=location.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.endswith("/manifest.json") or key.count("/") != prefix.count("/") + 1:
                continue
            counts["found"] += 1
            manifest = json.loads(client.get_object(Bucket=location.bucket, Key=key)["Body"].read())
            backup_id = manifest["backup_id"]
            if get(store, backup_id) is not None:
                counts["known"] += 1
                continue
            escrow = None
            try:
                escrow = json.loads(
                    client.get_object(Bucket=location.bucket, Key=manifest["escrow_key"])["Body"].read()
                )
            except client.exceptions.NoSuchKey:
                counts["shredded"] += 1
            if escrow and not _authentic(manifest, escrow, keyring, key, progress):
                counts["refused"] += 1
                continue
            with store.begin() as conn:
                conn.execute(
                    backups.insert().values(
                        backup_id=backup_id,
                        company_id=manifest["company_id"],
                        run_id=manifest["run_id"],
                        source_id=manifest["source_id"],
                        bucket=location.bucket,
                        prefix=location.prefix,
                        manifest_key=key,
                        status="complete" if escrow else "shredded",
                        tables_json=json.dumps(
                            {
                                name: {"rows": t["rows"], "sha256": t["sha256"], "chunks": len(t["chunks"])}
                                for name, t in manifest["tables"].items()
                            },
                            sort_keys=True,
                        ),
                        total_rows=manifest["total_rows"],
                        retain_until=manifest["retain_until"],
                        object_lock=bool(manifest.get("object_lock")),
                        created_at=manifest["created_at"],
                        completed_at=manifest["created_at"],
                    )
                )
                if escrow:
                    conn.execute(
                        backup_keys.insert().values(
                            backup_id=backup_id,
                            kek_id=escrow["kek_id"],
                            wrapped_key=escrow["wrapped_key"],
                            created_at=_now(),
                        )
                    )
            counts["added"] += 1
            if progress:
                progress(f"catalogued backup {backup_id} of {manifest['company_id']}/{manifest['source_id']}")
    return counts


def _at(location, bucket: str, prefix: str):
    """`location`'s endpoint and credentials, pointed at the catalog's bucket and prefix."""
    import dataclasses

    return dataclasses.replace(location, bucket=bucket, prefix=prefix)


def _escrow_versions(client, bucket: str, escrow_key: str) -> list[dict]:
    found = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=escrow_key):
        found += [
            item
            for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            if item["Key"] == escrow_key
        ]
    return found


def locked_until(client, location, backup_id: str) -> dt.datetime | None:
    """The latest retain-until date of any version of any object of the backup, read from the store
    (Object Lock retention, COMPLIANCE or GOVERNANCE), or None when none is locked. A new, unlocked
    version of the manifest cannot shorten what the chunks' and older versions' locks say."""
    from botocore.exceptions import ClientError

    latest = None
    prefix = location.key(backup_id) + "/"
    for page in client.get_paginator("list_object_versions").paginate(Bucket=location.bucket, Prefix=prefix):
        for item in page.get("Versions", []):
            try:
                retention = client.get_object_retention(
                    Bucket=location.bucket, Key=item["Key"], VersionId=item["VersionId"]
                ).get("Retention", {})
            except ClientError:  # no retention on this version
                continue
            until = retention.get("RetainUntilDate")
            if retention.get("Mode") in ("COMPLIANCE", "GOVERNANCE") and until is not None:
                latest = until if latest is None or until > latest else latest
    return latest


def crypto_shred(
    store: Engine, location, backup_id: str, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Make a backup unreadable for good by destroying every copy of its wrapped data key: the row in
    the compliance store (overwritten, then marked destroyed) and EVERY version of the escrow object
    (an Object Lock bucket keeps versions, so a plain delete would only add a delete marker). The
    locked ciphertext stays until its retention ends, but nobody can decrypt it.

    The bucket and prefix are the catalog's (`location` gives the endpoint and credentials only), so
    a wrong `--from` cannot leave the escrow copy behind; the backup is marked shredded only once no
    version of the escrow object is left. Refused while the backup's retention runs, by the catalog
    or by any lock the store holds on its objects: the law that asked for the backup still needs it."""
    now = now or dt.datetime.now(dt.UTC)
    record = get(store, backup_id)
    if record is None:
        raise BackupError(f"backup {backup_id} is not in the catalog; run `dereg catalog rebuild` first")
    until = record.get("retain_until")
    if until and dt.datetime.fromisoformat(until) > now:
        raise BackupError(
            f"backup {backup_id} of {record['company_id']} is retained until {until}; crypto-shredding it "
            "earlier would destroy records the law requires. Nothing was destroyed."
        )
    where = _at(location, record["bucket"], record["prefix"])
    client = where.client()
    locked = locked_until(client, where, backup_id)
    if locked is not None and locked > now:
        raise BackupError(
            f"the objects of backup {backup_id} of {record['company_id']} are locked in {where.describe()} "
            f"until {locked.isoformat()} (Object Lock), later than the catalog says ({until}); the catalog "
            "may have been rebuilt from an altered manifest. Nothing was destroyed."
        )
    deleted = _destroy_key(
        store, where, client, backup_id, status="shredded", company_id=record["company_id"]
    )
    return {
        "backup_id": backup_id,
        "escrow_versions_deleted": deleted,
        "shredded_at": _now(),
        "bucket": where.bucket,
        "prefix": where.prefix,
    }


def abandon_stale(store: Engine, location, company_id: str, run_id: str, source_id: str) -> list[str]:
    """Backups of this run still `started` belong to an attempt that died (a killed worker never
    records its failure). Their chunks may sit under Object Lock, undeletable; destroying their key
    (store row and every escrow version) makes them unreadable garbage, and `abandoned` keeps them
    out of every list of usable backups. Returns their ids."""
    with store.connect() as conn:
        stale = [
            r.backup_id
            for r in conn.execute(
                sa.select(backups.c.backup_id).where(
                    backups.c.company_id == company_id,
                    backups.c.run_id == run_id,
                    backups.c.source_id == source_id,
                    backups.c.status == "started",
                )
            )
        ]
    if not stale:
        return []
    for backup_id in stale:
        destroy_attempt_key(
            store, location, backup_id, "an earlier attempt died before finishing; its key was destroyed"
        )
    return stale


def destroy_attempt_key(store: Engine, location, backup_id: str, reason: str) -> int:
    """Destroy the data key of a backup attempt that will never complete (failed, or died while
    `started`): every version of its escrow copies (the wrapped key, and a subject key set if one
    was written) and the compliance store's copy; the attempt is marked `abandoned` with `reason`.
    Its chunks, which Object Lock may keep for years, are then ciphertext nobody can decrypt. No
    retention protects an attempt: the law's record is the complete backup, never a broken one.
    `location` must point at the attempt's bucket and prefix. Returns the escrow versions deleted;
    BackupError (the key NOT destroyed, the attempt not marked) when one cannot be deleted."""
    return _destroy_key(store, location, location.client(), backup_id, status="abandoned", error=reason)


def set_retain_until(store: Engine, backup_id: str, until: str) -> None:
    """Record when the objects left of a destroyed attempt can be deleted (their latest lock)."""
    with store.begin() as conn:
        conn.execute(backups.update().where(backups.c.backup_id == backup_id).values(retain_until=until))


def _destroy_key(
    store: Engine, where, client, backup_id: str, *, status: str, error: str | None = None, company_id=None
) -> int:
    """Delete every version of the backup's escrow copies (its wrapped data key, and the subject key
    set, which is wrapped under it and so dies with it), check that none is left, then overwrite the
    store's copy and mark the backup `status` (with `error`) and drop its key-set artifact. Returns
    the versions of the key's escrow copy deleted. BackupError, before the store is touched, when a
    version cannot be deleted or is still there: the key is NOT destroyed, nothing is marked."""
    escrow_key = where.key("_escrow", f"{backup_id}.json")
    subject_keys = where.key("_escrow", f"{backup_id}.subject-keys.json")
    deleted = 0
    for key in (escrow_key, subject_keys):
        for item in _escrow_versions(client, where.bucket, key):
            try:
                client.delete_object(Bucket=where.bucket, Key=key, VersionId=item["VersionId"])
            except client.exceptions.ClientError as exc:
                raise BackupError(
                    f"escrow copy {key} (version {item['VersionId']}) of backup {backup_id} cannot be "
                    f"deleted ({exc.response['Error'].get('Code')}): a bucket default retention may lock it. "
                    "The key is NOT destroyed yet; remove the default retention from the _escrow prefix's "
                    "bucket and run again."
                ) from None
            deleted += key == escrow_key
    left = _escrow_versions(client, where.bucket, escrow_key) + _escrow_versions(
        client, where.bucket, subject_keys
    )
    if left:
        raise BackupError(
            f"{len(left)} version(s) of the escrow copies {escrow_key} (and its subject key set) of backup "
            f"{backup_id} are still in {where.describe()} after deleting them; the backup is NOT marked "
            f"{status}. Run again."
        )
    artifact = artifacts.c.run_id == backup_id
    if company_id is not None:
        artifact = sa.and_(artifact, artifacts.c.company_id == company_id)
    with store.begin() as conn:
        conn.execute(
            backup_keys.update()
            .where(backup_keys.c.backup_id == backup_id)
            .values(wrapped_key="", destroyed_at=_now())
        )
        conn.execute(
            backups.update()
            .where(backups.c.backup_id == backup_id)
            .values(status=status, **({"error": error} if error is not None else {}))
        )
        # the per-subject key set (subjectkeys.KEY_SET_ARTIFACT) is wrapped under the data key
        conn.execute(artifacts.delete().where(artifact, artifacts.c.name == "subject_keys"))
    return deleted
