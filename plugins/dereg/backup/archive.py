"""Write an encrypted backup of one SQL source to an S3-compatible store, under Object Lock.

Rows are streamed table by table (memory does not grow with table size), serialised, compressed,
encrypted in chunks under a fresh data key, and uploaded; the manifest (row counts, plaintext
hashes, schema, key id) goes last. The backup is recorded as complete in the catalog only after
every object is uploaded and its lock has been read back. Format: docs/backup-format.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.engine import Engine

from dereg.backup import catalog
from dereg.backup.codec import CHUNK_BYTES, FORMAT_VERSION, associated_data, encode_row, kind_of, seal
from dereg.backup.s3 import S3Location
from dereg.errors import BackupError, DeregError
from dereg.keys import new_data_key
from dereg.redact import redact

STREAM_BATCH = 2000


@dataclass
class BackupRecord:
    backup_id: str
    manifest_key: str
    tables: dict[str, dict[str, Any]]
    total_rows: int
    retain_until: str
    object_lock: bool
    reused: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _s3_error(location: S3Location, exc: Exception, doing: str) -> BackupError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "?")
        return BackupError(
            f"S3 store {location.describe()} refused to {doing} ({code}). Check the bucket, the "
            "credentials of the backup connection and their permissions."
        )
    return BackupError(
        f"S3 store {location.describe()} is unreachable while trying to {doing} "
        f"({type(exc).__name__}). Check that the endpoint is up and the backup connection's "
        "endpoint_url is right."
    )


def ensure_bucket(client, location: S3Location, object_lock: bool) -> None:
    """Create the bucket if missing; refuse one without Object Lock when the manifest asks for it."""
    try:
        client.head_bucket(Bucket=location.bucket)
        exists = True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        exists = False
    if not exists:
        kwargs: dict[str, Any] = {"Bucket": location.bucket}
        if object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        if location.region and location.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": location.region}
        client.create_bucket(**kwargs)
        return
    if object_lock:
        try:
            config = client.get_object_lock_configuration(Bucket=location.bucket)
            enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ObjectLockConfigurationNotFoundError":
                raise
            enabled = False
        if not enabled:
            raise BackupError(
                f"bucket {location.bucket} has no Object Lock, but the manifest asks for object_lock: true. "
                "Nothing was uploaded. Use a bucket created with Object Lock enabled (it cannot be turned on "
                "later on most stores), or set backup.object_lock: false if the law allows."
            )


def _ordered_tables(engine: Engine, only: list[str] | None) -> list[sa.Table]:
    metadata = sa.MetaData()
    metadata.reflect(engine)
    tables = list(metadata.sorted_tables)  # parents before children
    if only is not None:
        missing = sorted(set(only) - {t.name for t in tables})
        if missing:
            raise BackupError(f"tables {missing} do not exist in the source")
        tables = [t for t in tables if t.name in only]
    return tables


class _Uploader:
    """Puts objects into the backup's location; chunks go up in parallel (a bounded number in
    flight, so memory stays flat), and `drain` waits for them before the manifest is written."""

    PARALLEL = 4

    def __init__(self, client, location: S3Location, lock: dict[str, Any]):
        from concurrent.futures import ThreadPoolExecutor
        from threading import BoundedSemaphore

        self.client, self.location, self.lock = client, location, lock
        self._pool = ThreadPoolExecutor(max_workers=self.PARALLEL, thread_name_prefix="dereg-upload")
        self._slots = BoundedSemaphore(self.PARALLEL * 2)
        self._futures: list = []

    def put(
        self, key: str, body: bytes, *, locked: bool = True, content_type: str = "application/octet-stream"
    ):
        kwargs = dict(self.lock) if locked else {}
        try:
            self.client.put_object(
                Bucket=self.location.bucket, Key=key, Body=body, ContentType=content_type, **kwargs
            )
        except (BotoCoreError, ClientError) as exc:
            raise _s3_error(self.location, exc, f"store {key}") from None

    def put_later(self, key: str, body: bytes) -> None:
        """Upload a locked chunk in the background; an error surfaces at the next call or at `drain`."""
        self._raise_failed()
        self._slots.acquire()

        def run() -> None:
            try:
                self.put(key, body)
            finally:
                self._slots.release()

        self._futures.append(self._pool.submit(run))

    def _raise_failed(self) -> None:
        done = [f for f in self._futures if f.done()]
        for f in done:
            f.result()  # re-raises the upload's error
        self._futures = [f for f in self._futures if not f.done()]

    def drain(self) -> None:
        """Wait until every chunk is stored; raise the first error."""
        for f in self._futures:
            f.result()
        self._futures = []

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _dump_table(
    engine: Engine,
    table: sa.Table,
    *,
    backup_id: str,
    data_key: bytes,
    uploader: _Uploader,
    location: S3Location,
    progress,
) -> dict[str, Any]:
    columns = list(table.columns)
    kinds = [kind_of(c.type) for c in columns]
    order = list(table.primary_key.columns) or columns
    digest = hashlib.sha256()
    rows = 0
    chunks: list[str] = []
    buffer = bytearray()
    pending: bytes | None = None

    def emit(plaintext: bytes, last: bool) -> None:
        index = len(chunks)
        key = location.key(backup_id, "data", table.name, f"{index:06d}.chunk")
        uploader.put_later(
            key, seal(data_key, plaintext, associated_data(backup_id, table.name, index, last))
        )
        chunks.append(key)

    with engine.connect() as conn:
        result = conn.execution_options(yield_per=STREAM_BATCH).execute(sa.select(*columns).order_by(*order))
        for row in result:
            line = encode_row(row, kinds)
            digest.update(line)
            buffer += line
            rows += 1
            if len(buffer) >= CHUNK_BYTES:
                if pending is not None:
                    emit(pending, last=False)
                pending, buffer = bytes(buffer), bytearray()
    if pending is not None:
        if buffer:
            emit(pending, last=False)
            emit(bytes(buffer), last=True)
        else:
            emit(pending, last=True)
    else:
        emit(bytes(buffer), last=True)  # a small or empty table: one chunk
    if progress:
        progress(f"backup {table.name}: {rows} rows in {len(chunks)} chunk(s)")
    return {
        "rows": rows,
        "sha256": digest.hexdigest(),
        "chunks": chunks,
        "columns": [
            {
                "name": c.name,
                "kind": k,
                "type": _type_text(c.type),
                "nullable": bool(c.nullable),
                "primary_key": bool(c.primary_key),
            }
            for c, k in zip(columns, kinds, strict=True)
        ],
        "primary_key": [c.name for c in table.primary_key.columns],
        "foreign_keys": [
            {
                "columns": [e.parent.name for e in fk.elements],
                "ref_table": fk.referred_table.name,
                "ref_columns": [e.column.name for e in fk.elements],
            }
            for fk in table.foreign_key_constraints
        ],
    }


def _type_text(type_) -> str:
    try:
        return str(type_)
    except Exception:  # noqa: BLE001
        return type(type_).__name__


def _check_lock(client, location: S3Location, key: str, retain_until: dt.datetime) -> None:
    try:
        retention = client.get_object_retention(Bucket=location.bucket, Key=key).get("Retention", {})
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(location, exc, f"read back the retention of {key}") from None
    until = retention.get("RetainUntilDate")
    if (
        retention.get("Mode") != "COMPLIANCE"
        or until is None
        or until < retain_until - dt.timedelta(seconds=5)
    ):
        raise BackupError(
            f"object {key} in {location.describe()} is not locked as required (mode "
            f"{retention.get('Mode')}, until {until}); the backup is not recorded as complete"
        )


def create_backup(
    engine: Engine,
    *,
    company_id: str,
    run_id: str,
    source_id: str,
    location: S3Location,
    keyring,
    store: Engine,
    retention_days: int,
    object_lock: bool,
    tables: list[str] | None = None,
    classification_summary: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BackupRecord:
    """Back up every table of `engine` (or `tables`); a complete backup of the same run is reused."""
    existing = catalog.find_complete(store, company_id, run_id, source_id)
    if existing is not None:
        if progress:
            progress(f"backup {existing['backup_id']} of this run is already complete; reusing it")
        return BackupRecord(
            existing["backup_id"],
            existing["manifest_key"],
            json.loads(existing["tables_json"]),
            existing["total_rows"],
            existing["retain_until"],
            existing["object_lock"],
            reused=True,
        )
    client = location.client()
    try:
        ensure_bucket(client, location, object_lock)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(location, exc, f"open bucket {location.bucket}") from None
    try:
        stale = catalog.abandon_stale(store, location, company_id, run_id, source_id)
    except (BotoCoreError, ClientError) as exc:
        raise _s3_error(location, exc, "clean up an earlier, interrupted backup") from None
    if stale and progress:
        progress(
            f"an earlier attempt of this run died during backup {', '.join(stale)}: marked abandoned, key destroyed"
        )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    retain_until = now + dt.timedelta(days=retention_days)
    backup_id = f"bk-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
    manifest_key = location.key(backup_id, "manifest.json")
    data_key = new_data_key()
    kek_id, wrapped = keyring.wrap_data_key(data_key)
    wrapped_b64 = base64.b64encode(wrapped).decode("ascii")
    catalog.start(
        store,
        backup_id=backup_id,
        company_id=company_id,
        run_id=run_id,
        source_id=source_id,
        bucket=location.bucket,
        prefix=location.prefix,
        manifest_key=manifest_key,
        object_lock=object_lock,
        kek_id=kek_id,
        wrapped_key=wrapped_b64,
    )
    lock = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until} if object_lock else {}
    uploader = _Uploader(client, location, lock)
    current = "(none yet)"
    try:
        # the escrow copy of the wrapped key: a separate prefix, never locked, so it can be destroyed
        escrow = {
            "backup_id": backup_id,
            "kek_id": kek_id,
            "wrapped_key": wrapped_b64,
            "wrap": "AES-KW (RFC 3394)",
        }
        uploader.put(
            location.key("_escrow", f"{backup_id}.json"),
            json.dumps(escrow).encode(),
            locked=False,
            content_type="application/json",
        )
        described: dict[str, dict[str, Any]] = {}
        for table in _ordered_tables(engine, tables):
            current = table.name
            described[table.name] = _dump_table(
                engine,
                table,
                backup_id=backup_id,
                data_key=data_key,
                uploader=uploader,
                location=location,
                progress=progress,
            )
        uploader.drain()  # every chunk stored before the manifest says the backup is complete
        total = sum(t["rows"] for t in described.values())
        manifest = {
            "format": "dereg-backup",
            "version": FORMAT_VERSION,
            "backup_id": backup_id,
            "company_id": company_id,
            "run_id": run_id,
            "source_id": source_id,
            "dialect": engine.dialect.name,
            "created_at": now.isoformat(),
            "tables": described,
            "table_order": list(described),
            "total_rows": total,
            "serialisation": "JSON array per row, UTF-8, newline-terminated; values encoded by column kind",
            "compression": "zstd",
            "cipher": "AES-256-GCM",
            "nonce_bytes": 12,
            "chunk_plaintext_bytes": CHUNK_BYTES,
            "kek_id": kek_id,
            "escrow_key": location.key("_escrow", f"{backup_id}.json"),
            "retention_days": retention_days,
            "retain_until": retain_until.isoformat(),
            "object_lock": object_lock,
            "classification_summary": classification_summary or {},
        }
        uploader.put(
            manifest_key,
            json.dumps(manifest, indent=1, sort_keys=True).encode(),
            content_type="application/json",
        )
        if object_lock:
            _check_lock(client, location, manifest_key, retain_until)
            first_chunk = next((t["chunks"][0] for t in described.values() if t["chunks"]), None)
            if first_chunk:
                _check_lock(client, location, first_chunk, retain_until)
        summary = {
            name: {"rows": t["rows"], "sha256": t["sha256"], "chunks": len(t["chunks"])}
            for name, t in described.items()
        }
        catalog.complete(
            store, backup_id, tables=summary, total_rows=total, retain_until=retain_until.isoformat()
        )
    except DeregError as exc:
        catalog.fail(store, backup_id, str(exc))
        raise
    except sa.exc.SQLAlchemyError as exc:
        reason = redact(str(getattr(exc, "orig", None) or exc))
        catalog.fail(store, backup_id, reason)
        raise BackupError(
            f"reading source {source_id!r} failed during backup {backup_id}: "
            f"{reason[:300]}. The backup is marked failed; re-run the task."
        ) from None
    except Exception as exc:
        # e.g. a driver or type processor that cannot parse a stored value: its message may quote the
        # value, so only its type is reported
        catalog.fail(store, backup_id, f"{type(exc).__name__} in table {current}")
        raise BackupError(
            f"backup {backup_id} of source {source_id!r} failed in table {current} ({type(exc).__name__}; "
            "the message is withheld because it may quote a stored value). Check that table's column "
            "types against its contents. The backup is marked failed; re-run the task."
        ) from None
    except BaseException as exc:
        catalog.fail(store, backup_id, f"{type(exc).__name__}")
        raise
    finally:
        uploader.close()
    if progress:
        progress(
            f"backup {backup_id}: {total} rows in {len(summary)} tables, retained until {retain_until:%Y-%m-%d}"
        )
    return BackupRecord(backup_id, manifest_key, summary, total, retain_until.isoformat(), object_lock)
