"""Signed ledger checkpoints in the off-site store: the ledger's anchor outside the compliance store.

The hash chain shows that the ledger's entries agree with each other, not that none was removed
from the end or that the chain was not recomputed after an edit: whoever can write the compliance
store can do both. So after every closure stage a checkpoint (the ledger's length and head hash at
that moment, when, and which stage wrote it) is signed with the deployment's Ed25519 key, the one
certificates are signed with, and written to the backup bucket under
`<prefix>/_ledger/checkpoints/<seq>-<head hash>.json`, under the backups' Object Lock retention.

`compare_with_checkpoints` checks a ledger against every checkpoint in a location: each one whose
signature is valid must name an entry that is in the ledger with the same hash. Because each hash
covers every entry before it, a matching checkpoint at entry N proves entries 1..N are the ones that
were anchored; removing entries from the end, or rewriting the chain from an edited entry, leaves a
checkpoint that no longer matches. Entries written after the latest checkpoint are not anchored
(the verifier says how many).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine

from dereg.connections import S3Location
from dereg.errors import DeregError
from dereg.evidence.artifacts import canonical_json
from dereg.evidence.ledger import ledger as ledger_table
from dereg.evidence.ledger import ledger_head
from dereg.evidence.signing import sign_document
from dereg.keys import public_key_fingerprint

FORMAT = "dereg-ledger-checkpoint/1"
FOLDER = "_ledger/checkpoints"
_NAME = re.compile(r"^(\d{12})-([0-9a-f]{64})\.json$")


class CheckpointError(DeregError):
    """A checkpoint could not be written or read; the message names the store and what to do."""


@dataclass
class CheckpointComparison:
    """What comparing a ledger with the checkpoints of one location found."""

    ok: bool
    location: str
    anchored_seq: int = 0
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)


def checkpoint_key(location: S3Location, seq: int, head_hash: str) -> str:
    return location.key(FOLDER, f"{seq:012d}-{head_hash}.json")


def sign_checkpoint(body: dict[str, Any], keyring) -> dict[str, Any]:
    """`{"format", "body", "signature"}`, the signature over the canonical JSON of the body."""
    return sign_document(body, keyring, document_format=FORMAT)


def checkpoint_signer(document: Any, public_key: Ed25519PublicKey) -> dict[str, Any] | None:
    """The body of `document` when it is a checkpoint signed by `public_key`, else None."""
    try:
        if document.get("format") != FORMAT or not isinstance(document.get("body"), dict):
            return None
        signature = base64.b64decode(document["signature"]["value"], validate=True)
        public_key.verify(signature, canonical_json(document["body"]).encode("utf-8"))
    except (InvalidSignature, AttributeError, KeyError, TypeError, ValueError):
        return None
    body = document["body"]
    if not isinstance(body.get("seq"), int) or not isinstance(body.get("head_hash"), str):
        return None
    return body


def write_checkpoint(
    store: Engine,
    location: S3Location,
    keyring,
    *,
    company_id: str,
    run_id: str,
    stage: str,
    retention_days: int,
    object_lock: bool,
) -> str | None:
    """Sign the ledger's current head and put it off-site; returns the object key (None: empty ledger).

    Locked like the backups (COMPLIANCE mode for `retention_days`) when `object_lock`: nobody, the
    bucket's owner included, can then delete or overwrite it before that date."""
    with store.connect() as conn:
        head = conn.execute(
            sa.select(ledger_head.c.seq, ledger_head.c.hash).where(ledger_head.c.id == 1)
        ).first()
    if head is None:
        return None
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = {
        "seq": head.seq,
        "head_hash": head.hash,
        "written_at": now.isoformat(),
        "company_id": company_id,
        "run_id": run_id,
        "stage": stage,
    }
    key = checkpoint_key(location, head.seq, head.hash)
    kwargs: dict[str, Any] = {}
    if object_lock:
        kwargs = {
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": now + dt.timedelta(days=retention_days),
        }
    document = json.dumps(sign_checkpoint(body, keyring), indent=1, sort_keys=True).encode("utf-8")
    client = location.client()
    try:
        # stages before the backup run before it creates the bucket: create it as the backup would
        # (with Object Lock), never let a put create it implicitly without
        from dereg.backup.writer import ensure_bucket

        ensure_bucket(client, location, object_lock)
        client.put_object(
            Bucket=location.bucket, Key=key, Body=document, ContentType="application/json", **kwargs
        )
    except (BotoCoreError, ClientError) as exc:
        raise CheckpointError(
            f"could not write the ledger checkpoint {key} to {location.describe()} ({_code(exc)}); the "
            "ledger is anchored only up to the previous checkpoint until the next stage writes one. Check "
            "the backup connection, that the bucket exists and that its credentials may write to it."
        ) from None
    return key


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "?")
    return type(exc).__name__


def _versions(client, location: S3Location) -> list[tuple[str, str | None]]:
    """Every version of every object under the checkpoint folder (a later version or a delete
    marker hides nothing: each version is read)."""
    prefix = location.key(FOLDER) + "/"
    found: list[tuple[str, str | None]] = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=location.bucket, Prefix=prefix):
        found += [(v["Key"], v.get("VersionId")) for v in page.get("Versions", [])]
    return found


def _read(client, location: S3Location, key: str, version: str | None) -> Any:
    kwargs = {"VersionId": version} if version and version != "null" else {}
    raw = client.get_object(Bucket=location.bucket, Key=key, **kwargs)["Body"].read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _ledger_hashes(store: Engine, seqs: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    ordered = sorted(seqs)
    with store.connect() as conn:
        for i in range(0, len(ordered), 500):
            batch = ordered[i : i + 500]
            rows = conn.execute(
                sa.select(ledger_table.c.seq, ledger_table.c.hash).where(ledger_table.c.seq.in_(batch))
            )
            found.update({r.seq: r.hash for r in rows})
    return found


def compare_with_checkpoints(
    store: Engine, location: S3Location, public_key: Ed25519PublicKey
) -> CheckpointComparison:
    """Compare the ledger in `store` with the checkpoints under `location` signed by `public_key`.

    Problems: a validly signed checkpoint whose entry is missing or has another hash (entries
    removed or the chain rewritten); an object in the checkpoint folder that disagrees with the
    ledger and is not signed by `public_key` (someone else wrote there); no checkpoint at all."""
    where = f"s3://{location.bucket}/{location.key(FOLDER)}/"
    result = CheckpointComparison(ok=False, location=where)
    client = location.client()
    try:
        versions = _versions(client, location)
    except (BotoCoreError, ClientError) as exc:
        raise CheckpointError(
            f"cannot list the ledger checkpoints in {where} at {location.endpoint_url or 'AWS'} ({_code(exc)}); "
            "check the address and the AWS_* credentials"
        ) from None
    named = [(_NAME.match(key.rsplit("/", 1)[-1]), key, version) for key, version in versions]
    hashes = _ledger_hashes(store, {int(m.group(1)) for m, _, _ in named if m})
    with store.connect() as conn:
        length = conn.execute(sa.select(sa.func.max(ledger_table.c.seq))).scalar() or 0
    fingerprint = public_key_fingerprint(public_key)

    def entry_hash(seq: int) -> str | None:
        if seq not in hashes:
            hashes.update(_ledger_hashes(store, {seq}))
        return hashes.get(seq)

    agreeing: list[tuple[int, str, str | None]] = []
    try:
        for match, key, version in named:
            if match and hashes.get(int(match.group(1))) == match.group(2):
                agreeing.append((int(match.group(1)), key, version))
                continue
            # disagrees with the ledger by its name (or is not a checkpoint's name): read what it says
            body = checkpoint_signer(_read(client, location, key, version), public_key)
            if body is None:
                result.problems.append(
                    f"{key} (version {version}) is in the checkpoint folder but is not a checkpoint signed by "
                    f"the key {fingerprint}: someone else wrote to the bucket"
                )
            elif body["seq"] > length:
                result.problems.append(
                    f"checkpoint {key} of {body['written_at']} records {body['seq']} ledger entries, but the "
                    f"ledger has {length}: entries were removed from the end"
                )
            elif entry_hash(body["seq"]) != body["head_hash"]:
                result.problems.append(
                    f"checkpoint {key} of {body['written_at']} records entry {body['seq']} with hash "
                    f"{body['head_hash'][:16]}…, the ledger has another: the ledger was rewritten up to there"
                )
            else:  # its name was altered but its signed content agrees
                agreeing.append((body["seq"], key, version))
        # the latest agreeing checkpoint that is really signed anchors every entry up to it
        for seq, key, version in sorted(agreeing, reverse=True):
            body = checkpoint_signer(_read(client, location, key, version), public_key)
            if body is not None and body["seq"] == seq and entry_hash(seq) == body["head_hash"]:
                result.anchored_seq = seq
                result.checks.append(
                    f"the ledger matches the latest signed checkpoint in {where} (entry {seq}, written "
                    f"{body['written_at']} after {body['stage']} of {body['company_id']}), signed by {fingerprint}"
                )
                break
            result.problems.append(
                f"{key} (version {version}) is named like a checkpoint of this ledger but is not signed by "
                f"the key {fingerprint}: someone else wrote to the bucket"
            )
    except (BotoCoreError, ClientError) as exc:
        raise CheckpointError(f"cannot read the ledger checkpoints in {where} ({_code(exc)})") from None
    if not versions:
        result.problems.append(f"there is no ledger checkpoint in {where}: nothing anchors the ledger there")
    elif not result.anchored_seq and not result.problems:
        result.problems.append(f"no checkpoint in {where} is signed by the key {fingerprint}")
    if result.anchored_seq and length > result.anchored_seq:
        result.checks.append(
            f"entries {result.anchored_seq + 1}..{length} were written after the latest checkpoint there "
            "and are not anchored by it"
        )
    result.ok = not result.problems
    return result


#: how long the checkpoint anchoring a subject-shred or final certificate stays locked: PIPL Art. 56
#: keeps the records of processing (the erasure's evidence among them) for at least three years
EVIDENCE_RETENTION_DAYS = 3 * 366


def anchor_certificate_ledger(
    store: Engine,
    location: S3Location | None,
    keyring,
    *,
    company_id: str,
    run_id: str,
    stage: str,
    object_lock: bool,
    warn=None,
) -> str | None:
    """Write a checkpoint of the ledger's head for a certificate issued outside a closure run (a
    subject shred, the final certificate) beside the backups (locked for EVIDENCE_RETENTION_DAYS
    where their bucket has Object Lock: `object_lock`). Returns where the
    checkpoints are (`s3://bucket/prefix`, for the certificate's `ledger.checkpoints`), or None when
    there is no location or the write failed (`warn` is told why: the certificate is still issued,
    and `dereg verify-certificate` says its ledger was not compared off-site)."""
    if location is None:
        return None
    try:
        write_checkpoint(
            store,
            location,
            keyring,
            company_id=company_id,
            run_id=run_id,
            stage=stage,
            retention_days=EVIDENCE_RETENTION_DAYS,
            object_lock=object_lock,
        )
    except DeregError as exc:
        if warn is not None:
            warn(f"WARNING: {exc}")
        return None
    return f"s3://{location.bucket}/{location.prefix}"
