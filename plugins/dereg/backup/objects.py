"""Encrypted backup and verified restore of an object source (an S3 prefix of customer files).

An object backup is a Dereg backup (same catalog, keys, chunk sealing and Object Lock as a database
backup, see docs/backup-format.md) whose manifest has `"kind": "objects"` and two streams:

- `_index`: one JSON line per object, `[relative key, size, sha256 of the content]`, in key order;
- `_content`: the objects' bytes concatenated in the same order.

Both streams are cut into chunks, compressed and sealed like table chunks. Object keys may name a
person (a photo called after its pupil), so they live only inside the encrypted index: the
plaintext manifest holds counts, sizes and hashes. Restoring writes each object into a scratch
directory, reads it back from disk, hashes it and compares it with the index and the manifest;
the scratch directory is removed afterwards, also on failure. Memory stays flat: objects are read
and written in pieces, never whole.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag

from dereg.backup import catalog
from dereg.backup.codec import associated_data, open_sealed
from dereg.backup.writer import BackupRecord, open_session, reuse_complete
from dereg.connections import S3Location
from dereg.errors import BackupError, DeregError

READ_PIECE = 1 << 20
INDEX, CONTENT = "_index", "_content"


def list_current(client, bucket: str, prefix: str) -> Iterator[dict]:
    """The current objects under `prefix/` (what a reader of the bucket sees), in key order."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        yield from page.get("Contents", [])


def backup_objects(
    source_client,
    *,
    bucket: str,
    prefix: str,
    company_id: str,
    run_id: str,
    source_id: str,
    location: S3Location,
    keyring,
    store,
    retention_days: int,
    object_lock: bool,
    classification_summary: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackupRecord:
    """Back up every current object under `s3://bucket/prefix/`; a complete backup of this run is reused."""
    reused = reuse_complete(store, company_id, run_id, source_id, progress)
    if reused is not None:
        return reused
    session = open_session(
        company_id=company_id,
        run_id=run_id,
        source_id=source_id,
        location=location,
        keyring=keyring,
        store=store,
        retention_days=retention_days,
        object_lock=object_lock,
        progress=progress,
    )
    backup_id = session.backup_id
    index = session.stream(INDEX, lines=True)  # restored one chunk of whole lines at a time
    content = session.stream(CONTENT)
    count = 0
    try:
        base = f"{prefix}/" if prefix else ""
        try:
            for obj in list_current(source_client, bucket, prefix):
                digest, size = hashlib.sha256(), 0
                body = source_client.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
                while piece := body.read(READ_PIECE):
                    digest.update(piece)
                    size += len(piece)
                    content.write(piece)
                body.close()
                line = [obj["Key"][len(base) :], size, digest.hexdigest()]
                index.write((json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode())
                count += 1
                if progress and count % 500 == 0:
                    progress(f"backup {source_id}: {count} objects, {content.size} bytes")
        except (BotoCoreError, ClientError) as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise BackupError(
                f"object source {source_id} (s3://{bucket}/{prefix}) could not be read during backup "
                f"{backup_id} ({code}) after {count} objects; the backup is marked failed. Check the "
                "connection and re-run the task."
            ) from None
        index.finish()
        content.finish()
        described = {
            INDEX: {
                "rows": count,
                "sha256": index.digest.hexdigest(),
                "bytes": index.size,
                "chunks": index.chunks,
            },
            CONTENT: {
                "rows": count,
                "sha256": content.digest.hexdigest(),
                "bytes": content.size,
                "chunks": content.chunks,
            },
        }
        manifest = {
            **session.common_manifest(company_id=company_id, run_id=run_id, source_id=source_id),
            "kind": "objects",
            "dialect": "s3",
            "source": {"bucket_sha256": hashlib.sha256(bucket.encode()).hexdigest()[:16], "objects": count},
            "tables": described,
            "table_order": [INDEX, CONTENT],
            "total_rows": count,
            "total_bytes": content.size,
            "serialisation": "_index: JSON array [relative key, size, sha256] per line, UTF-8, key order; "
            "_content: the objects' bytes concatenated in index order",
            "classification_summary": classification_summary or {},
        }
        record = session.finish(manifest, described)
    except DeregError as exc:
        catalog.fail(store, backup_id, str(exc))
        raise
    except BaseException as exc:
        catalog.fail(store, backup_id, type(exc).__name__)
        raise
    finally:
        session.uploader.close()
    if progress:
        progress(
            f"backup {backup_id}: {count} objects, {content.size} bytes, retained until {session.retain_until:%Y-%m-%d}"
        )
    return record


def _plaintext(
    client, location: S3Location, backup_id: str, data_key: bytes, name: str, spec: dict, version: int
):
    """Yield (index, plaintext) of each chunk of stream `name`; raise BackupError naming a bad chunk."""
    chunks = spec["chunks"]
    for i, key in enumerate(chunks):
        try:
            blob = client.get_object(Bucket=location.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise BackupError(
                f"{name}: chunk {i} ({key}) cannot be read ({exc.response['Error'].get('Code')})"
            ) from None
        try:
            yield open_sealed(
                data_key, blob, associated_data(backup_id, name, i, i == len(chunks) - 1, version)
            )
        except InvalidTag:
            raise BackupError(
                f"{name}: chunk {i} ({key}) fails authentication: it was altered, truncated or belongs "
                "to another backup"
            ) from None


def restore_objects(
    manifest: dict,
    *,
    data_key: bytes,
    client,
    location: S3Location,
    report,
    into_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
):
    """Restore an object backup into a scratch directory and verify every object against the index
    and the manifest. Fills and returns `report` (a restore.RestoreReport)."""
    t0 = time.monotonic()
    backup_id = manifest["backup_id"]
    spec_index, spec_content = manifest["tables"][INDEX], manifest["tables"][CONTENT]
    workdir = Path(tempfile.mkdtemp(prefix="dereg-restore-objects-")) if into_dir is None else into_dir
    restored, restored_bytes, content_digest = 0, 0, hashlib.sha256()
    try:
        # the index first: it is small (one line per object), so it is held while the content streams
        index_digest, entries = hashlib.sha256(), []
        for plain in _plaintext(
            client, location, backup_id, data_key, INDEX, spec_index, manifest["version"]
        ):
            index_digest.update(plain)
            entries.extend(json.loads(line) for line in plain.split(b"\n") if line)
        if index_digest.hexdigest() != spec_index["sha256"] or len(entries) != spec_index["rows"]:
            report.problems.append(
                f"{INDEX}: {len(entries)} entries restored, the manifest says {spec_index['rows']}, or its "
                "hash differs from the manifest"
            )
        pieces = _plaintext(client, location, backup_id, data_key, CONTENT, spec_content, manifest["version"])
        buffer = memoryview(b"")
        for number, (_rel, size, sha) in enumerate(entries):
            path = workdir / f"{number:08d}.obj"  # numbered: keys may name people, paths stay neutral
            remaining = size
            with path.open("wb") as out:
                while remaining:
                    if not buffer:
                        try:
                            buffer = memoryview(next(pieces))
                        except StopIteration:
                            break
                    take = buffer[:remaining]
                    out.write(take)
                    content_digest.update(take)
                    remaining -= len(take)
                    buffer = buffer[len(take) :]
            digest = hashlib.sha256()
            with path.open("rb") as back:
                for piece in iter(lambda: back.read(READ_PIECE), b""):
                    digest.update(piece)
            path.unlink()
            if remaining or digest.hexdigest() != sha:
                report.problems.append(
                    f"object #{number + 1} of {len(entries)}: restored content differs from the index "
                    f"({size - remaining} of {size} bytes)"
                )
                continue
            restored += 1
            restored_bytes += size
            if progress and restored % 500 == 0:
                progress(f"restore {backup_id}: {restored}/{len(entries)} objects verified")
        leftover = len(buffer) + sum(len(p) for p in pieces)
        if leftover:
            report.problems.append(f"{CONTENT}: {leftover} bytes beyond the last object of the index")
    except BackupError as exc:
        report.problems.append(str(exc))
    finally:
        if into_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    ok_content = (
        content_digest.hexdigest() == spec_content["sha256"] and restored_bytes == spec_content["bytes"]
    )
    if restored == spec_content["rows"] and not ok_content:
        report.problems.append(f"{CONTENT}: content hash of the restored objects differs from the manifest")
    report.tables["objects"] = {
        "expected_rows": spec_content["rows"],
        "restored_rows": restored,
        "expected_bytes": spec_content["bytes"],
        "restored_bytes": restored_bytes,
        "expected_sha256": spec_content["sha256"],
        "restored_sha256": content_digest.hexdigest(),
        "ok": restored == spec_content["rows"] and ok_content and not report.problems,
    }
    if progress:
        progress(
            f"restore {backup_id}: {restored}/{spec_content['rows']} objects, {restored_bytes} bytes, "
            f"{'ok' if report.tables['objects']['ok'] else 'MISMATCH'}"
        )
    report.seconds = time.monotonic() - t0
    return report
