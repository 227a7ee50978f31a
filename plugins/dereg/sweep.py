"""The end of a backup's life: when its retention has ended, it is destroyed, and the company gets
a final certificate saying that no readable copy of its customers' data remains.

The `retention_sweep` DAG runs daily. `expired_backups` lists the catalog's backups whose
retain-until date has passed (complete ones, and shredded ones whose objects could not all be
deleted yet), and the attempts that will never complete (failed, or `started` for more than
STALE_STARTED_DAYS), whose key no retention protects. For each, `sweep_one`:

1. skips it, and reports it, when any of its objects is under a legal hold (a court or regulator
   froze it: nothing is destroyed while the hold is on);
2. crypto-shreds it as `dereg shred` does (`catalog.crypto_shred`: every version of the escrowed
   wrapped key deleted, the store's copy overwritten), unless that was done on an earlier sweep; an
   attempt's key is destroyed the same way at once (`catalog.destroy_attempt_key`, status
   `abandoned`), and the date its objects' last lock ends becomes its retain-until date;
3. deletes every version and delete marker under the backup's prefix whose lock has expired; a
   version still locked (an Object Lock longer than the catalog's date) is counted with the date
   its lock ends, and the next sweep after that date deletes it;
4. verifies, by listing again, that no escrow copy of the key is left, that the store holds no
   wrapped key, and which objects remain (only locked ciphertext, which nobody can decrypt);
5. writes a ledger entry (stage `retention_sweep`) with counts and ids only.

When every backup of a company is destroyed or shredded, `final_certificate` issues the company's
*final certificate*: signed like the closure certificate, citing it (run and SHA-256), listing each
backup's destruction and the residual risks, written beside the closure's output and stored as the
artifact `final_certificate`. Skips and failures are e-mailed to the company's operations address.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import Any

from dereg import config

log = logging.getLogger(__name__)

DAG_ID = "retention_sweep"
SCHEDULE = "0 4 * * *"  # 04:00 UTC every day
STAGE = "retention_sweep"
FINAL = "final_certificate"
#: catalog status of a backup whose key is destroyed and whose objects are all deleted
DESTROYED = "destroyed"

RESIDUAL_RISKS = [
    "object versions still under Object Lock (listed with the date their lock ends) remain as ciphertext "
    "that nobody can decrypt: every copy of their data key is destroyed; the next sweep after that date "
    "deletes them",
    "the object store's own replicas and internal caches are deleted on the store's schedule, not Dereg's",
]


#: a backup still `started` this many days after it began belongs to a worker that died and was
#: never retried (a retry of its run abandons it at once): the sweep destroys its key
STALE_STARTED_DAYS = 7


def expired_backups(store, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """What the sweep destroys: backups whose retention has ended (complete ones, and shredded ones
    with objects left); attempts that will never complete (failed ones, and ones `started` more than
    STALE_STARTED_DAYS ago), whose key nothing protects; abandoned attempts whose objects' locks have
    ended (or were never looked at)."""
    from dereg.backup import catalog

    now = now or dt.datetime.now(dt.UTC)
    stale = now - dt.timedelta(days=STALE_STARTED_DAYS)
    found = []
    for b in catalog.list_backups(store, status=None):
        until = b.get("retain_until")
        status = b["status"]
        if status == "failed" or (status == "started" and dt.datetime.fromisoformat(b["created_at"]) < stale):
            found.append(catalog.task_ref(b))
        elif status == "abandoned" and (not until or dt.datetime.fromisoformat(until) <= now):
            found.append(catalog.task_ref(b))
        elif status in ("complete", "shredded") and until and dt.datetime.fromisoformat(until) <= now:
            found.append(catalog.task_ref(b))
    return found


def _legal_holds(client, bucket: str, prefix: str) -> int:
    from dereg.erase.objects import _versions, lock_of

    holds = 0
    for kind, entry in _versions(client, bucket, prefix):
        if kind == "version":
            lock = lock_of(client, bucket, entry["Key"], entry["VersionId"])
            holds += bool(lock and lock.get("legal_hold"))
    return holds


def sweep_one(backup: dict[str, Any], *, location, store, sweep_run_id: str, now=None) -> dict[str, Any]:
    """Destroy one expired backup (see the module docstring); the result goes to the ledger."""
    from dereg.backup import catalog
    from dereg.erase.objects import erase_objects, verify_objects
    from dereg.errors import DeregError
    from dereg.evidence.ledger import Ledger
    from dereg.redact import redact

    now = now or dt.datetime.now(dt.UTC)
    backup_id = backup["backup_id"]
    result: dict[str, Any] = {"backup_id": backup_id, "company_id": backup["company_id"], "ok": False}
    where = catalog._at(location, backup["bucket"], backup["prefix"])
    client = where.client()
    objects_prefix = where.key(backup_id).rstrip("/")
    event = "failed"
    try:
        holds = _legal_holds(client, where.bucket, objects_prefix)
        if holds:
            result.update(skipped="legal hold", legal_holds=holds, ok=True)
            event = "skipped"
            return result
        if backup["status"] == "complete":
            shred = catalog.crypto_shred(store, where, backup_id, now=now)
            result["escrow_versions_deleted"] = shred["escrow_versions_deleted"]
        elif backup["status"] in ("failed", "started"):  # an attempt that never completed
            result["attempt"] = backup["status"]
            result["escrow_versions_deleted"] = catalog.destroy_attempt_key(
                store,
                where,
                backup_id,
                f"the attempt {'failed' if backup['status'] == 'failed' else 'never finished'}; its key was "
                f"destroyed by the retention sweep {sweep_run_id}",
            )
        erased = erase_objects(client, where.bucket, objects_prefix)
        check = verify_objects(client, where.bucket, objects_prefix)
        escrow_left = catalog._escrow_versions(
            client, where.bucket, where.key("_escrow", f"{backup_id}.json")
        )
        key = catalog.wrapped_key(store, backup_id)
        problems = list(check["problems"])
        if escrow_left:
            problems.append(f"{len(escrow_left)} version(s) of the escrowed key are still in the store")
        if key is not None and key[1]:
            problems.append("the compliance store still holds the wrapped data key")
        result.update(
            versions_deleted=erased.versions_deleted,
            delete_markers_deleted=erased.delete_markers_deleted,
            objects_left_locked=check["remaining"]["locked"],
            locked_until=check["locked_until"],
            problems=problems,
            ok=not problems,
        )
        if result["ok"]:
            event = "succeeded"
            if not check["remaining"]["locked"]:
                catalog.set_status(store, backup_id, DESTROYED)
            elif backup["status"] != "complete" and check["locked_until"]:
                # an attempt has no retention date of its own: the sweep after its last lock ends
                # deletes what is left
                catalog.set_retain_until(store, backup_id, check["locked_until"])
    except DeregError as exc:
        result["problems"] = [redact(str(exc))]
    finally:
        Ledger(store).append(
            company_id=backup["company_id"],
            run_id=sweep_run_id,
            stage=STAGE,
            event=event,
            actor=DAG_ID,
            details=result,
        )
    return result


def _closure_certificate(store, company_id: str) -> dict[str, Any] | None:
    """The company's latest closure certificate (not a dry-run report): run id and SHA-256 of the
    signed JSON as the certify stage wrote it."""
    import sqlalchemy as sa

    from dereg.evidence.artifacts import artifacts
    from dereg.evidence.run_artifacts import CERTIFICATE

    with store.connect() as conn:
        rows = conn.execute(
            sa.select(artifacts.c.run_id, artifacts.c.body, artifacts.c.created_at)
            .where(artifacts.c.company_id == company_id, artifacts.c.name == CERTIFICATE)
            .order_by(artifacts.c.id.desc())
        ).all()
    for row in rows:
        cert = json.loads(row.body)
        if cert.get("body", {}).get("dry_run"):
            continue
        text = json.dumps(cert, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        return {
            "run_id": row.run_id,
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "issued_at": cert["body"].get("finished_at"),
        }
    return None


def readable_backups(store, company_id: str | None = None) -> list[dict[str, Any]]:
    """Backups (of `company_id`, or all) whose data key is alive: complete ones, and a failed or
    unfinished attempt whose key was never destroyed (its chunks, if any were written, decrypt)."""
    from dereg.backup import catalog

    return [
        b
        for b in catalog.list_backups(store, status=None)
        if (company_id is None or b["company_id"] == company_id)
        and b["status"] not in ("shredded", DESTROYED, "abandoned")
        and catalog.wrapped_key(store, b["backup_id"]) is not None
    ]


def companies_done(store, results: list[dict[str, Any]]) -> list[str]:
    """Companies swept in this run none of whose backups is still readable (a live data key)."""
    swept = {r["company_id"] for r in results if r.get("ok") and not r.get("skipped")}
    readable = {b["company_id"] for b in readable_backups(store)}
    return sorted(swept - readable)


def final_certificate(
    store, keyring, company_id: str, *, sweep_run_id: str, location_of=None, progress=None
) -> dict[str, Any]:
    """Sign and write the company's final certificate; returns where it is and its SHA-256.
    `location_of(bucket, prefix)` (an S3Location with credentials): the ledger's head is first
    anchored by a signed checkpoint beside the company's latest backup, named in the certificate."""
    from dereg.backup import catalog
    from dereg.errors import BackupError
    from dereg.evidence.artifacts import put_artifact
    from dereg.evidence.certificate import sign_certificate, write_certificate
    from dereg.evidence.ledger import Ledger

    left = readable_backups(store, company_id)
    if left:
        # the certificate states that no readable copy remains: never sign it while one does
        raise BackupError(
            f"no final certificate for {company_id}: "
            + "; ".join(f"backup {b['backup_id']} ({b['status']}) still has a live data key" for b in left)
            + ". A complete backup is destroyed by the retention sweep once its retention ends; the sweep "
            f"destroys the key of a failed attempt at once, and of one left `started` after {STALE_STARTED_DAYS} days."
        )
    ledger = Ledger(store)
    destroyed = []
    for b in catalog.list_backups(store, status=None):
        if b["company_id"] != company_id or b["status"] not in ("shredded", "abandoned", DESTROYED):
            continue
        entries = [
            e for e in ledger.entries() if e.stage == STAGE and e.details.get("backup_id") == b["backup_id"]
        ]
        last = entries[-1] if entries else None
        destroyed.append(
            {
                "backup_id": b["backup_id"],
                "source_id": b["source_id"],
                "bucket": b["bucket"],
                "retain_until": b.get("retain_until"),
                "status": b["status"],
                "key_destroyed": True,
                "objects_left_locked": (last.details.get("objects_left_locked") if last else None),
                "locked_until": (last.details.get("locked_until") if last else None),
                "ledger_entry": {"entry_id": last.entry_id, "hash": last.hash} if last else None,
            }
        )
    checkpoints = None
    ours = [b for b in catalog.list_backups(store, status=None) if b["company_id"] == company_id]
    if location_of is not None and ours:
        from dereg.evidence.checkpoints import anchor_certificate_ledger

        latest = max(ours, key=lambda b: b["created_at"])
        checkpoints = anchor_certificate_ledger(
            store,
            location_of(latest["bucket"], latest["prefix"]),
            keyring,
            company_id=company_id,
            run_id=sweep_run_id,
            stage=FINAL,
            object_lock=bool(latest["object_lock"]),
            warn=progress,
        )
    head = ledger.head()
    now = dt.datetime.now(dt.UTC).isoformat()
    closure = _closure_certificate(store, company_id)
    body = {
        "title": "Final certificate: no copy of the customers' data remains / 最终证明：客户数据已无任何副本",
        "kind": "final",
        "dry_run": False,
        "company": {"id": company_id, **_names(company_id)},
        "closure_certificate": closure,
        "statement": (
            "Every backup of this company's customer data has reached the end of its retention and was "
            "destroyed: every copy of its data key is gone (crypto-shredded), and its objects are deleted "
            "or, where a lock still runs, left as ciphertext nobody can decrypt. Together with the closure "
            "certificate cited, no readable copy of the customers' personal data remains with Dereg."
        ),
        "backups_destroyed": destroyed,
        "residual_risks": list(RESIDUAL_RISKS),
        "run_id": sweep_run_id,
        "operator": DAG_ID,
        "approver": None,
        "started_at": now,
        "finished_at": now,
        "stores": [],
        "backup_kept": [],
        "verification_method": "every object version under each backup's prefix listed again; escrow "
        "versions of the wrapped key listed again; the compliance store's key row read back",
        "verification_result": "passed",
        "ledger": {
            "head_hash": head.hash if head else None,
            "entries": [d["ledger_entry"] | {"stage": STAGE} for d in destroyed if d["ledger_entry"]],
            # where its signed checkpoint is (dereg verify-certificate --checkpoints); none if not written
            **({"checkpoints": checkpoints} if checkpoints else {}),
        },
    }
    cert = sign_certificate(body, keyring)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in sweep_run_id)
    json_path, html_path = write_certificate(
        cert, config.output_dir() / company_id / safe, "final-certificate"
    )
    put_artifact(store, company_id, sweep_run_id, FINAL, cert)
    ledger.append(
        company_id=company_id,
        run_id=sweep_run_id,
        stage=FINAL,
        event="succeeded",
        actor=DAG_ID,
        details={
            "backups": len(destroyed),
            "certificate_sha256": hashlib.sha256(json_path.read_bytes()).hexdigest(),
        },
    )
    return {
        "company_id": company_id,
        "path": str(json_path),
        "html": str(html_path),
        "backups": len(destroyed),
    }


def _names(company_id: str) -> dict[str, str]:
    from dereg.errors import ManifestError
    from dereg.manifest import load_manifest, manifest_paths

    for path in manifest_paths():
        try:
            m = load_manifest(path)
        except ManifestError:
            continue
        if m.company_id == company_id:
            return {"name_zh": m.name_zh, "name_en": m.name_en}
    return {}


def alert(results: list[dict], smtp, *, sweep_run_id: str, sender: str = "dereg@localhost") -> int:
    """One e-mail per company with a skipped (legal hold) or failed backup, to its operations
    address; returns messages sent."""
    from dereg.alerts import email_companies

    by_company: dict[str, list[dict]] = {}
    for r in results:
        if r.get("skipped") or not r.get("ok"):
            by_company.setdefault(r["company_id"], []).append(r)

    def why(r: dict) -> str:
        if r.get("skipped"):
            return (
                f"skipped: {r['legal_holds']} object(s) under a legal hold; nothing destroyed while it is on"
            )
        return "failed: " + "; ".join(r.get("problems") or ["see the task log"])

    def body(company: str, rows: list[dict]) -> list[str]:
        lines = [
            f"Retention sweep {sweep_run_id}: these backups of {company} reached the end of their retention",
            "",
        ]
        lines += [f"- {r['backup_id']}: {why(r)}" for r in rows]
        return [
            *lines,
            "",
            "The ledger (stage retention_sweep) has each result; the next daily sweep tries again.",
        ]

    return email_companies(
        by_company,
        smtp,
        subject=lambda company, rows: (
            f"[Dereg] retention sweep: {len(rows)} backup(s) of {company} not destroyed"
        ),
        body=body,
        what="sweep alert",
        sender=sender,
    )
