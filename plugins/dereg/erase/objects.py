"""Erasure of an object source: every version and delete marker under its prefix.

An S3 prefix that holds personal data is erased whole: current objects, older versions (which a
plain DELETE leaves behind in a versioned bucket) and delete markers. Folders that must survive
belong in a separate object source with its own prefix. Versions under Object Lock (retention not
yet passed, or a legal hold) cannot be deleted by anyone; they are counted and reported with the
date their lock ends, never skipped silently, and the certificate names them as a residual risk.
Object keys may name people, so nothing here logs or returns a key: counts, dates and hashes only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dereg.errors import ErasureError

DELETE_BATCH = 1000  # the S3 DeleteObjects limit


@dataclass
class ObjectErasurePlan:
    company_id: str
    source_id: str
    bucket: str
    prefix: str
    action: str  # "delete" (every version and delete marker under the prefix) or "keep"
    objects: int  # current objects when planned
    bytes: int
    personal_groups: list[str] = field(default_factory=list)  # "folder (type)" with personal data
    kind: str = "objects"
    plan_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ObjectErasurePlan:
        return cls(**data)

    def compute_hash(self) -> str:
        body = {k: v for k, v in self.to_dict().items() if k != "plan_hash"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "kind": "objects",
            "action": self.action,
            "objects": self.objects,
            "bytes": self.bytes,
            "personal_groups": len(self.personal_groups),
            "plan_hash": self.plan_hash,
        }


def build_object_plan(company_id: str, inventory, classification) -> ObjectErasurePlan:
    """Erase the whole prefix when any folder/type group holds personal data; else keep it."""
    personal = sorted(f"{c.table or '.'} ({c.column})" for c in classification.columns if c.personal)
    plan = ObjectErasurePlan(
        company_id=company_id,
        source_id=inventory.source_id,
        bucket=inventory.bucket,
        prefix=inventory.prefix,
        action="delete" if personal else "keep",
        objects=inventory.objects,
        bytes=inventory.bytes,
        personal_groups=personal,
    )
    plan.plan_hash = plan.compute_hash()
    return plan


def _versions(client, bucket: str, prefix: str) -> Iterator[tuple[str, dict]]:
    """("version" | "marker", entry) for everything stored under `prefix/`, every version."""
    paginator = client.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        for v in page.get("Versions", []):
            yield "version", v
        for m in page.get("DeleteMarkers", []):
            yield "marker", m


def lock_of(client, bucket: str, key: str, version_id: str | None) -> dict[str, Any] | None:
    """The lock on one object version ({"mode", "until"} or {"legal_hold": True}), or None."""
    kwargs = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        kwargs["VersionId"] = version_id
    try:
        hold = client.get_object_legal_hold(**kwargs).get("LegalHold", {})
        if hold.get("Status") == "ON":
            return {"legal_hold": True}
    except ClientError:
        pass  # no legal hold configured (or the store does not support them)
    try:
        retention = client.get_object_retention(**kwargs).get("Retention", {})
    except ClientError:
        return None
    until = retention.get("RetainUntilDate")
    if until is not None and until > dt.datetime.now(dt.UTC):
        return {"mode": retention.get("Mode"), "until": until.astimezone(dt.UTC).isoformat()}
    return None


@dataclass
class ObjectEraseResult:
    versions_deleted: int = 0
    delete_markers_deleted: int = 0
    locked: int = 0
    locked_until: str | None = None  # the latest date a lock ends
    legal_holds: int = 0
    failed: int = 0
    failure_codes: dict[str, int] = field(default_factory=dict)

    def note_lock(self, lock: dict[str, Any]) -> None:
        self.locked += 1
        if lock.get("legal_hold"):
            self.legal_holds += 1
        elif self.locked_until is None or lock["until"] > self.locked_until:
            self.locked_until = lock["until"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase_objects(
    client, bucket: str, prefix: str, *, progress: Callable[[str], None] | None = None
) -> ObjectEraseResult:
    """Delete every version and delete marker under `prefix/`. Locked versions are counted, not
    skipped silently; any other refusal fails the stage after the pass (a re-run deletes the rest)."""
    result = ObjectEraseResult()
    batch: list[tuple[str, dict]] = []

    def flush() -> None:
        objects = [{"Key": e["Key"], "VersionId": e["VersionId"]} for _, e in batch]
        kinds = {(e["Key"], e["VersionId"]): kind for kind, e in batch}
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        errors = response.get("Errors", [])
        failed = {(e["Key"], e.get("VersionId")) for e in errors}
        for kind in (kinds[k] for k in kinds if k not in failed):
            if kind == "version":
                result.versions_deleted += 1
            else:
                result.delete_markers_deleted += 1
        for error in errors:
            lock = lock_of(client, bucket, error["Key"], error.get("VersionId"))
            if lock is not None:
                result.note_lock(lock)
            else:
                result.failed += 1
                code = error.get("Code", "?")
                result.failure_codes[code] = result.failure_codes.get(code, 0) + 1
        batch.clear()
        if progress:
            done = result.versions_deleted + result.delete_markers_deleted
            progress(f"objects: {done} versions and delete markers deleted, {result.locked} locked")

    try:
        # page by page: the listing continues after its last key and version, so deleting what it
        # has already returned does not make it skip anything (memory stays flat)
        for entry in _versions(client, bucket, prefix):
            batch.append(entry)
            if len(batch) >= DELETE_BATCH:
                flush()
        if batch:
            flush()
    except (BotoCoreError, ClientError) as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise ErasureError(
            f"object store s3://{bucket}/{prefix} failed during erasure ({code}) after "
            f"{result.versions_deleted} versions; re-run the erase task to delete the rest"
        ) from None
    if result.failed:
        raise ErasureError(
            f"object store s3://{bucket}/{prefix}: {result.failed} version(s) could not be deleted and are not "
            f"locked ({result.failure_codes}); give the connection's user s3:DeleteObjectVersion on the "
            "prefix and re-run the erase task"
        )
    return result


def verify_objects(client, bucket: str, prefix: str) -> dict[str, Any]:
    """List every version again: only versions under a lock may remain."""
    remaining = {"versions": 0, "delete_markers": 0, "locked": 0, "unlocked": 0}
    latest_until = None
    for kind, entry in _versions(client, bucket, prefix):
        remaining["versions" if kind == "version" else "delete_markers"] += 1
        lock = lock_of(client, bucket, entry["Key"], entry["VersionId"]) if kind == "version" else None
        if lock is None:
            remaining["unlocked"] += 1
        else:
            remaining["locked"] += 1
            if lock.get("until") and (latest_until is None or lock["until"] > latest_until):
                latest_until = lock["until"]
    problems = []
    if remaining["unlocked"]:
        problems.append(
            f"{remaining['unlocked']} unlocked version(s) or delete marker(s) still under s3://{bucket}/{prefix}"
        )
    return {"remaining": remaining, "locked_until": latest_until, "ok": not problems, "problems": problems}
