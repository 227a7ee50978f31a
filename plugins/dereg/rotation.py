"""Key rotation: a new key-encryption key (KEK), every live wrapped data key re-wrapped under it, the
old KEK retired and destroyed after a grace period.

Practitioners ask for keys and algorithms to be updated regularly (定期更新加密算法和密钥). A backup's
data key never changes (the locked ciphertext cannot be rewritten); what rotates is the KEK that wraps
it, in both places the wrapped key lives:

1. `rotate_keyring` makes a new KEK the active one; the old one is kept, marked retired with the date
   after which it may be destroyed (`grace_days`, from include/policy/keys.yaml).
2. `rewrap_backups` re-wraps, for every backup whose key is alive (not crypto-shredded) and wrapped
   under another KEK, its data key under the active KEK: first a new version of the escrow object
   (`<prefix>/_escrow/<backup>.json`, never locked), then the compliance store's row, then the escrow
   object's older versions are deleted (a version a lock keeps is reported, not hidden). Interrupted
   anywhere, the old wrap still works, and running it again finishes the job.
3. `destroy_retired` removes a retired KEK from the keyring once its grace period is over, and only
   when no live wrapped key, in the store or in any escrow object's versions, still depends on it:
   no data key is ever left wrapped only under a destroyed key.

Every step writes ledger entries (stage `key_rotation`) with ids and counts only. The KMS provider
(`dereg.keys_kms`) rotates through the KMS instead (its key material rotates inside the KMS, old
material stays able to decrypt); re-wrapping then moves each wrapped key to the current material.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from dereg import config
from dereg.errors import KeyringError

log = logging.getLogger(__name__)

DAG_ID = "key_rotation"
STAGE = "key_rotation"
#: the ledger's company id for what concerns the whole deployment (the keyring)
DEPLOYMENT = "_deployment"
DEFAULTS = {"schedule": "0 2 1 1 *", "grace_days": 30}


def policy(path: Path | None = None) -> dict[str, Any]:
    """The rotation policy: `schedule` (cron, UTC; default yearly on 1 January) and `grace_days`."""
    path = path or config.include_dir() / "policy" / "keys.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    rotation = {**DEFAULTS, **((data or {}).get("rotation") or {})}
    if not isinstance(rotation["grace_days"], int) or rotation["grace_days"] < 0:
        raise KeyringError(f"{path}: rotation.grace_days must be a whole number of days >= 0")
    return rotation


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def rotate_keyring(keyring, *, grace_days: int, store=None, actor: str = "dereg") -> dict[str, Any]:
    """A new active KEK; the previous one retired, destroyable after `grace_days`. `keyring` is any
    key provider: the KMS provider rotates the KMS key's material instead (same id; the KMS keeps the
    older material, so nothing is retired here: `retired_kek` is None)."""
    old, new = keyring.rotate(grace_days=grace_days, now=_now())
    if old == new:
        result = {"new_kek": new, "retired_kek": None, "destroy_after": None, "material_rotated": True}
    else:
        result = {"new_kek": new, "retired_kek": old, "destroy_after": keyring.retired[old]}
    if store is not None:
        _ledger(store, "rotated", actor, result)
    return result


def rotated_message(result: dict[str, Any]) -> str:
    """What `rotate_keyring` did, for a person."""
    if result.get("material_rotated"):
        return (
            f"KMS key {result['new_kek']}: new key material is active; the older material stays inside "
            "the KMS (it still decrypts, and cannot be destroyed apart from the key)"
        )
    return (
        f"new key-encryption key {result['new_kek']} is active; {result['retired_kek']} retired "
        f"(it still unwraps; destroyable after {result['destroy_after']})"
    )


def _ledger(store, event: str, actor: str, details: dict, company_id: str = DEPLOYMENT) -> None:
    from dereg.evidence.ledger import Ledger

    Ledger(store).append(
        company_id=company_id,
        run_id=details.get("run_id", "key-rotation"),
        stage=STAGE,
        event=event,
        actor=actor,
        details=details,
    )


def _live_backups(store) -> list[dict[str, Any]]:
    """Every backup whose key is not destroyed, with its store row's KEK and wrap (None when the store
    has no live row: a catalog rebuilt from the bucket, a row lost; the escrow copy then counts)."""
    import sqlalchemy as sa

    from dereg.backup import catalog

    keys = catalog.backup_keys
    with store.connect() as conn:
        rows = (
            conn.execute(
                sa.select(
                    catalog.backups.c.backup_id,
                    catalog.backups.c.company_id,
                    catalog.backups.c.bucket,
                    catalog.backups.c.prefix,
                    keys.c.kek_id,
                    keys.c.wrapped_key,
                    keys.c.destroyed_at,
                )
                .select_from(catalog.backups.outerjoin(keys, keys.c.backup_id == catalog.backups.c.backup_id))
                .where(catalog.backups.c.status.not_in(("shredded", "destroyed", "failed")))
                .order_by(catalog.backups.c.backup_id)
            )
            .mappings()
            .all()
        )
    found = []
    for row in rows:
        live = bool(row["wrapped_key"]) and row["destroyed_at"] is None
        found.append(
            {
                **dict(row),
                "kek_id": row["kek_id"] if live else None,
                "wrapped_key": row["wrapped_key"] if live else None,
            }
        )
    return found


def _latest_escrow(client, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError:
        return None


def rewrap_backups(
    store,
    keyring,
    location,
    *,
    run_id: str = "key-rotation",
    actor: str = "dereg",
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Re-wrap every live data key not wrapped under the active KEK (or the backups in `only`), in the
    compliance store and in the escrow object, whichever holds it.

    `location`: the S3 endpoint and credentials (the bucket and prefix of each backup come from the
    catalog). Returns counts per company and the escrow versions a lock kept."""
    from dereg.backup import catalog

    active = keyring.active_kek_id()
    since = keyring.current_since()  # a KMS key's latest rotation; None for a keyring (ids differ)
    done: dict[str, int] = {}
    kept_versions: list[dict[str, str]] = []
    for row in _live_backups(store):
        if only is not None and row["backup_id"] not in only:
            continue
        where = catalog._at(location, row["bucket"], row["prefix"])
        client = where.client()
        escrow_key = where.key("_escrow", f"{row['backup_id']}.json")
        escrow = _latest_escrow(client, where.bucket, escrow_key)
        source = (row["kek_id"], row["wrapped_key"]) if row["kek_id"] else None
        if source is None and escrow is not None:
            source = (escrow["kek_id"], escrow["wrapped_key"])
        if source is None:
            log.warning(
                "backup %s: no wrapped key in the store or in escrow; nothing to re-wrap", row["backup_id"]
            )
            continue
        if not _needs_rewrap(row, escrow, active, since):
            kept_versions += _drop_old_escrow_versions(client, where.bucket, escrow_key, active)
            continue
        kek_id, wrapped = keyring.rewrap(
            source[0], base64.b64decode(source[1]), what=f"the data key of backup {row['backup_id']}"
        )
        wrapped_b64 = base64.b64encode(wrapped).decode()
        # dated to the microsecond: a KMS rotation's date is compared with it (`_needs_rewrap`)
        body = {
            "backup_id": row["backup_id"],
            "kek_id": kek_id,
            "wrapped_key": wrapped_b64,
            "wrap": getattr(keyring, "wrap_name", "AES-KW (RFC 3394)"),
            "rewrapped_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        # escrow first: if the store update never happens, both places still unwrap (old KEK kept)
        client.put_object(
            Bucket=where.bucket,
            Key=escrow_key,
            Body=json.dumps(body).encode(),
            ContentType="application/json",
        )
        if row["kek_id"] is not None:
            with store.begin() as conn:
                conn.execute(
                    catalog.backup_keys.update()
                    .where(catalog.backup_keys.c.backup_id == row["backup_id"])
                    .values(kek_id=kek_id, wrapped_key=wrapped_b64)
                )
        done[row["company_id"]] = done.get(row["company_id"], 0) + 1
        kept_versions += _drop_old_escrow_versions(client, where.bucket, escrow_key, active)
    for company, count in sorted(done.items()):
        _ledger(
            store, "rewrapped", actor, {"run_id": run_id, "kek": active, "backups": count}, company_id=company
        )
    return {"kek": active, "rewrapped": done, "escrow_versions_kept": kept_versions}


def _wrapped_at(escrow: dict[str, Any]) -> dt.datetime | None:
    when = escrow.get("rewrapped_at") or escrow.get("wrapped_at")
    return dt.datetime.fromisoformat(when) if when else None


def _needs_rewrap(row: dict[str, Any], escrow: dict[str, Any] | None, active: str, since) -> bool:
    """Whether a backup's wrapped key (store row and escrow copy) is not yet under the active KEK, or,
    for a KMS key (`since`: its latest rotation), was wrapped before the current material. The store
    row is current when it holds exactly the current escrow copy's wrap (re-wrapping writes the escrow
    copy first, then the row)."""
    if since is None:
        stale_store = row["kek_id"] is not None and row["kek_id"] != active
        return stale_store or (escrow is not None and escrow.get("kek_id") != active)
    if escrow is None:
        return True  # no dated copy: re-wrap (which writes one)
    at = _wrapped_at(escrow)
    if escrow.get("kek_id") != active or at is None or at < since:
        return True
    return row["kek_id"] is not None and row["wrapped_key"] != escrow.get("wrapped_key")


def _drop_old_escrow_versions(client, bucket: str, escrow_key: str, active: str) -> list[dict[str, str]]:
    """Delete the escrow object's versions wrapped under another KEK (the latest is the active one's)."""
    from botocore.exceptions import ClientError

    from dereg.backup.catalog import _escrow_versions

    kept = []
    for item in _escrow_versions(client, bucket, escrow_key):
        if "VersionId" not in item or item.get("IsLatest"):
            continue
        try:
            client.delete_object(Bucket=bucket, Key=escrow_key, VersionId=item["VersionId"])
        except ClientError as exc:
            kept.append(
                {
                    "key": escrow_key,
                    "version": item["VersionId"],
                    "why": exc.response["Error"].get("Code", "?"),
                }
            )
    return kept


def kek_in_use(store, location, kek_id: str) -> list[str]:
    """Backups whose key is alive and wrapped under `kek_id`: in the store's row, or in any version of
    the escrow object."""
    from dereg.backup import catalog

    using = []
    for row in _live_backups(store):
        if row["kek_id"] == kek_id:
            using.append(row["backup_id"])
            continue
        where = catalog._at(location, row["bucket"], row["prefix"])
        client = where.client()
        escrow_key = where.key("_escrow", f"{row['backup_id']}.json")
        for item in catalog._escrow_versions(client, where.bucket, escrow_key):
            if "ETag" not in item:  # a delete marker holds no key
                continue
            body = client.get_object(Bucket=where.bucket, Key=escrow_key, VersionId=item["VersionId"])[
                "Body"
            ].read()
            if json.loads(body).get("kek_id") == kek_id:
                using.append(row["backup_id"])
                break
    return sorted(set(using))


def destroy_retired(
    keyring, store, location, *, now: dt.datetime | None = None, actor: str = "dereg"
) -> dict[str, Any]:
    """Destroy every retired KEK whose grace period is over and on which no live wrapped key depends."""
    now = now or _now()
    destroyed, waiting, refused = [], {}, {}
    for kek_id, until in sorted(keyring.retired.items()):
        if dt.datetime.fromisoformat(until) > now:
            waiting[kek_id] = until
            continue
        using = kek_in_use(store, location, kek_id)
        if using:
            refused[kek_id] = using
            continue
        keyring.destroy_kek(kek_id)
        destroyed.append(kek_id)
    result = {"destroyed": destroyed, "waiting": waiting, "refused": refused}
    if destroyed or refused:
        _ledger(store, "destroyed" if not refused else "refused", actor, {**result, "run_id": "key-rotation"})
    if refused:
        # the keys destroyed in the same call are gone whatever follows: say so, or the operator reads
        # the refusal as "nothing happened"
        done = f"destroyed: {', '.join(destroyed)} (nothing depended on them); " if destroyed else ""
        raise KeyringError(
            done
            + "retired key-encryption key(s) "
            + "; ".join(f"{k} (still wraps the data key of {', '.join(v)})" for k, v in refused.items())
            + " not destroyed: run the re-wrap first (`dereg keyring rotate --rewrap-only`, or the key_rotation DAG)"
        )
    return result
