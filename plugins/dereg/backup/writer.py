"""The backup writer: a session (ids, data key, lock, catalog rows), the uploader and the chunk streams.

`open_session`/`start_session` begin a backup (bucket checked, a stale attempt of the same run
abandoned, the wrapped key recorded and escrowed); `Session.stream` gives a `ChunkStream` per table
or object stream: bytes in, hashed and counted, cut into chunks, sealed (zstd, AES-256-GCM) and
uploaded by the `Uploader`'s threads while reading goes on; `Session.finish` writes the manifest
last, reads the locks back and marks the backup complete in the catalog. Table backups
(archive.py, pgcopy.py) and object backups (objects.py) share it. Format: docs/backup-format.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.engine import Engine

from dereg.backup import catalog
from dereg.backup.codec import (
    CHUNK_BYTES,
    FORMAT_VERSION,
    MANIFEST_MAC,
    NONCE_BYTES,
    associated_data,
    manifest_mac,
    object_name,
    pack_associated_data,
    schema_associated_data,
    seal,
)
from dereg.connections import S3Location
from dereg.errors import BackupError, DeregError
from dereg.keys import new_data_key
from dereg.redact import reference_token


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
    #: the tables of each part, for a backup just completed from its parts (`parts.finish_backup`)
    parts: list[list[str]] | None = None


def s3_error(location: S3Location, exc: Exception, doing: str) -> BackupError:
    return location.error(exc, doing)


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


class Uploader:
    """Puts objects into the backup's location; chunks are sealed (zstd, AES-256-GCM) and uploaded by
    a pool of threads while the reader goes on, and `drain` waits for them before the manifest is
    written. What is queued is bounded in bytes (`QUEUED_BYTES` of plaintext, and `QUEUED_CHUNKS`
    chunks), so memory stays flat, while many small tables' chunks can wait for `release` at once
    instead of stopping the reader after a few."""

    PARALLEL = 4
    #: plaintext queued or in flight at most (a larger chunk still goes, alone)
    QUEUED_BYTES = (PARALLEL + 1) * CHUNK_BYTES
    QUEUED_CHUNKS = 512
    #: sealed chunks kept at most while the store is being checked (`hold`), so that the readers
    #: go on meanwhile instead of stopping once a few chunks are queued (a chunk that does not fit
    #: waits, holding its plaintext, as before)
    HELD_BYTES = 8 * CHUNK_BYTES

    def __init__(self, client, location: S3Location, lock: dict[str, Any]):
        from concurrent.futures import ThreadPoolExecutor
        from threading import Condition, Event, Lock

        self.client, self.location, self.lock = client, location, lock
        self._pool = ThreadPoolExecutor(max_workers=self.PARALLEL, thread_name_prefix="dereg-upload")
        self._room = Condition()  # guards the two counters below
        self._queued_bytes = 0
        self._queued_chunks = 0
        self._futures: list = []
        self._mutex = Lock()  # several table readers may submit at once
        self._open = Event()  # chunks wait for it: nothing is uploaded before the store is checked
        self._open.set()
        self._refused: BaseException | None = None
        self._held: list[tuple[str, bytes]] = []  # sealed while on hold, uploaded at `release`
        self._held_bytes = 0
        self._held_lock = Lock()
        #: set by `close`: nothing more is queued or uploaded, and whoever waits for room stops
        self._closed = False

    def hold(self) -> None:
        """Queue chunks (sealing them) but upload none until `release` or `refuse`."""
        self._open.clear()

    def release(self) -> None:
        with self._held_lock:
            self._open.set()
            held, self._held, self._held_bytes = self._held, [], 0
        for key, body in held:
            self.put_later(key, body)

    def refuse(self, error: BaseException) -> None:
        """The store must not be written to: queued chunks are dropped, the next submit raises."""
        self._refused = error
        with self._held_lock:
            self._open.set()
            self._held, self._held_bytes = [], 0

    def _keep_held(self, key: str, body: bytes) -> bool:
        """Keep a sealed chunk until `release` if the store is still being checked and it fits."""
        with self._held_lock:
            if self._open.is_set() or self._held_bytes + len(body) > self.HELD_BYTES:
                return False
            self._held.append((key, body))
            self._held_bytes += len(body)
            return True

    def put(
        self, key: str, body: bytes, *, locked: bool = True, content_type: str = "application/octet-stream"
    ):
        kwargs = dict(self.lock) if locked else {}
        try:
            self.client.put_object(
                Bucket=self.location.bucket, Key=key, Body=body, ContentType=content_type, **kwargs
            )
        except (BotoCoreError, ClientError) as exc:
            raise s3_error(self.location, exc, f"store {key}") from None

    def put_later(self, key: str, body: bytes) -> None:
        """Upload a locked object (already sealed) in the background, once the store is checked (as
        `seal_later`); an error surfaces at the next call or at `drain`."""

        def job() -> None:
            self._open.wait()
            if self._refused is None and not self._closed:
                self.put(key, body)

        self._submit(job, len(body))

    def seal_later(self, key: str, data_key: bytes, plaintext: bytes, aad: bytes) -> None:
        """Compress, encrypt and upload a chunk in the background (zstd and AES-GCM release the GIL,
        so sealing overlaps the reading of the next chunk and the other uploads)."""

        def job() -> None:
            body = seal(data_key, plaintext, aad)
            if self._keep_held(key, body):
                return  # its plaintext's room is freed now; `release` uploads it
            self._open.wait()
            if self._refused is None and not self._closed:
                self.put(key, body)

        self._submit(job, len(plaintext))

    def _reserve(self, size: int) -> int:
        """Wait until `size` bytes fit in the queue (anything fits in an empty one); returns what
        was reserved."""
        size = max(size, 1)
        with self._room:
            while (
                not self._closed
                and self._queued_chunks
                and (
                    self._queued_bytes + size > self.QUEUED_BYTES or self._queued_chunks >= self.QUEUED_CHUNKS
                )
            ):
                self._room.wait()
            if self._closed:
                raise BackupError(
                    f"the uploads to {self.location.describe()} were stopped (the backup failed or ended)"
                )
            self._queued_bytes += size
            self._queued_chunks += 1
        return size

    def _free(self, size: int) -> None:
        with self._room:
            self._queued_bytes -= size
            self._queued_chunks -= 1
            self._room.notify_all()

    def _submit(self, job, size: int) -> None:
        self._raise_failed()
        reserved = self._reserve(size)
        if self._refused is not None:
            self._free(reserved)
            raise self._refused

        def run() -> None:
            try:
                job()
            finally:
                self._free(reserved)

        with self._mutex:
            self._futures.append(self._pool.submit(run))

    def _raise_failed(self) -> None:
        with self._mutex:
            done = [f for f in self._futures if f.done()]
            self._futures = [f for f in self._futures if not f.done()]
        for f in done:
            f.result()  # re-raises the upload's error

    def later(self, work, *args):
        """`work(*args)` on one of the upload threads (outside the queue's bounds); its future."""
        return self._pool.submit(work, *args)

    def drain(self) -> None:
        """Wait until every chunk is stored; raise the first error."""
        with self._mutex:
            futures, self._futures = self._futures, []
        for f in futures:
            f.result()

    def close(self) -> None:
        """Stop: queued uploads are dropped (a failed backup's), whoever waits for room in the queue
        gets an error instead of waiting for ever (uploads cancelled here never free theirs), and a job
        waiting for the store's check ends without uploading."""
        with self._room:
            self._closed = True
            self._room.notify_all()
        self._open.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


class ChunkStream(io.RawIOBase):
    """One table's (or stream's) plaintext: bytes in, hashed, its lines counted, cut into chunks of
    `chunk_bytes` (format version 3: anywhere, also inside a line, so one huge value never has to
    be held whole; with `lines`, at the first line end after that size, as the objects' index is
    cut), each sealed and uploaded in the background. The last chunk is flagged, so one chunk is
    held back until the next one (or the end) is known. Memory: one chunk being filled, one held
    back, and the uploader's bounded queue."""

    def __init__(
        self,
        name: str,
        *,
        backup_id: str,
        data_key: bytes,
        uploader: Uploader,
        location: S3Location,
        chunk_bytes: int,
        lines: bool = False,
        folder: str = "data",
        aad=associated_data,
    ):
        super().__init__()
        self.name, self.backup_id, self.data_key = name, backup_id, data_key
        self.folder, self.aad = folder, aad
        self.uploader, self.location, self.chunk_bytes, self.lines = uploader, location, chunk_bytes, lines
        # a pack's whole stream is not hashed (each of its tables is, on its way in; the format has no
        # hash of a pack)
        self.digest = hashlib.sha256() if folder != "packs" else None
        self.size = 0
        self.newlines = 0
        self.chunks: list[str] = []
        self._buffer = bytearray()
        self._pending: bytes | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")  # `data` may be a memoryview (from io.BufferedWriter)
        n = len(view)
        if self.digest is not None:
            self.digest.update(view)
        self.size += n
        # taken in chunk-sized steps, so one huge write (a 200 MB value) never sits whole in the buffer
        step = n if self.lines else self.chunk_bytes
        for pos in range(0, n, max(step, 1)):
            start = len(self._buffer)
            self._buffer += view[pos : pos + step]  # copied here
            self.newlines += self._buffer.count(b"\n", start)
            self._cut()
        return n

    def _cut(self) -> None:
        while len(self._buffer) >= self.chunk_bytes:
            cut = self.chunk_bytes
            if self.lines:
                cut = self._buffer.find(b"\n", self.chunk_bytes - 1) + 1
                if cut == 0:
                    break  # a line longer than the chunk so far: wait for its end
            if self._pending is not None:
                self._emit(self._pending, last=False)
            if len(self._buffer) - cut <= cut:
                # the buffer becomes the chunk and only what follows the cut is copied (usually
                # nothing: the large tables' COPY text comes in blocks that add up to a chunk)
                pending = self._buffer
                with memoryview(pending) as buffered:
                    self._buffer = bytearray(buffered[cut:])
                del pending[cut:]
                self._pending = pending
            else:
                with memoryview(self._buffer) as buffered:
                    self._pending = bytes(buffered[:cut])  # one copy, not a slice and then a copy
                del self._buffer[:cut]

    def _emit(self, plaintext: bytes, last: bool) -> None:
        index = len(self.chunks)
        key = self.location.key(self.backup_id, self.folder, object_name(self.name), f"{index:06d}.chunk")
        self.uploader.seal_later(
            key, self.data_key, plaintext, self.aad(self.backup_id, self.name, index, last)
        )
        self.chunks.append(key)

    def finish(self) -> None:
        """Emit what is left; the last chunk carries the last flag (an empty stream: one empty chunk,
        except a pack: one that only empty tables went into stores nothing, as none of them names a
        chunk, and its `chunks` stay empty)."""
        if self.folder == "packs" and self.size == 0:
            return
        if self._pending is not None and self._buffer:
            self._emit(self._pending, last=False)
            self._emit(bytes(self._buffer), last=True)
        elif self._pending is not None:
            self._emit(self._pending, last=True)
        else:
            self._emit(bytes(self._buffer), last=True)
        self._pending, self._buffer = None, bytearray()


def place_in_pack(entry: dict[str, Any], pack, start: int) -> None:
    """Complete a packed table's manifest entry once its pack is finished: the pack chunks that
    hold its `bytes` (none for an empty table), the first one's index in the pack, where its bytes
    begin in that chunk and how many chunks the pack has (the last one is flagged as such)."""
    size = pack.chunk_bytes
    first = start // size
    last = (start + entry["bytes"] - 1) // size if entry["bytes"] else first - 1
    entry["chunks"] = pack.chunks[first : last + 1]
    entry["pack"] = {
        "name": pack.name,
        "first": first,
        "offset": start - first * size,
        "count": len(pack.chunks),
    }


def _check_lock(client, location: S3Location, key: str, retain_until: dt.datetime) -> None:
    try:
        retention = client.get_object_retention(Bucket=location.bucket, Key=key).get("Retention", {})
    except (BotoCoreError, ClientError) as exc:
        raise s3_error(location, exc, f"read back the retention of {key}") from None
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


@dataclass
class Session:
    """A backup being written: its ids, keys, lock, uploader. `open_session` starts it (bucket
    checked, stale attempts abandoned, catalog row and escrow copy written); `finish` writes the
    manifest last, reads the locks back and marks it complete."""

    client: Any
    location: S3Location
    store: Engine
    backup_id: str
    created_at: dt.datetime
    retain_until: dt.datetime
    manifest_key: str
    escrow_key: str
    data_key: bytes
    kek_id: str
    retention_days: int
    object_lock: bool
    uploader: Uploader
    context: dict[str, Any] = field(default_factory=dict)
    #: the format version written (the manifest's `version`, and in every chunk's associated data):
    #: FORMAT_VERSION, or 6 for a backup sealed with the GGM tree (`subject_scheme="ggm"`)
    version: int = FORMAT_VERSION

    def _chunk_stream(self, name: str, **kwargs) -> ChunkStream:
        from functools import partial

        kwargs["aad"] = partial(kwargs.get("aad", associated_data), version=self.version)
        return ChunkStream(
            name,
            backup_id=self.backup_id,
            data_key=self.data_key,
            uploader=self.uploader,
            location=self.location,
            chunk_bytes=CHUNK_BYTES,
            **kwargs,
        )

    def stream(self, name: str, *, lines: bool = False) -> ChunkStream:
        return self._chunk_stream(name, lines=lines)

    def schema_stream(self, section: str) -> ChunkStream:
        """A section of the source's schema (format version 4): its own folder and associated data."""
        return self._chunk_stream(section, folder="schema", aad=schema_associated_data)

    def pack_stream(self, name: str) -> ChunkStream:
        """A pack (format version 6): several small tables' plaintexts one after the other, cut
        into chunks at exactly `CHUNK_BYTES` (so chunk i holds bytes i*CHUNK_BYTES onwards); its
        own folder and associated data."""
        return self._chunk_stream(name, folder="packs", aad=pack_associated_data)

    def common_manifest(self, *, company_id: str, run_id: str, source_id: str) -> dict[str, Any]:
        return {
            "format": "dereg-backup",
            "version": self.version,
            "backup_id": self.backup_id,
            "company_id": company_id,
            "run_id": run_id,
            "source_id": source_id,
            "created_at": self.created_at.isoformat(),
            "compression": "zstd",
            "cipher": "AES-256-GCM",
            "nonce_bytes": NONCE_BYTES,
            "chunk_plaintext_bytes": CHUNK_BYTES,
            "kek_id": self.kek_id,
            "escrow_key": self.escrow_key,
            "retention_days": self.retention_days,
            "retain_until": self.retain_until.isoformat(),
            "object_lock": self.object_lock,
        }

    def finish(self, manifest: dict[str, Any], described: dict[str, dict[str, Any]]) -> BackupRecord:
        """Every chunk stored, then the manifest, then the locks read back, then `complete`."""
        self.uploader.drain()
        # a stored chunk's lock is read back while the manifest is written (one round trip less
        # at the end); the backup is complete only once both locks are read back as required
        chunk_lock = None
        first_chunk = next((t["chunks"][0] for t in described.values() if t["chunks"]), None)
        if self.object_lock and first_chunk:
            chunk_lock = self.uploader.later(
                _check_lock, self.client, self.location, first_chunk, self.retain_until
            )
        try:
            # the MAC binds the whole manifest (tables, chunk lists, retention) to this backup's data
            # key: a new version of manifest.json written by anyone without that key is refused
            manifest[MANIFEST_MAC] = manifest_mac(self.data_key, manifest)
            self.uploader.put(
                self.manifest_key,
                json.dumps(manifest, indent=1, sort_keys=True).encode(),
                content_type="application/json",
            )
            if self.object_lock:
                _check_lock(self.client, self.location, self.manifest_key, self.retain_until)
        finally:
            if chunk_lock is not None:
                futures_wait([chunk_lock])
        if chunk_lock is not None:
            chunk_lock.result()
        summary = {
            name: {"rows": t["rows"], "sha256": t["sha256"], "chunks": len(t["chunks"])}
            for name, t in described.items()
        }
        total = manifest["total_rows"]
        catalog.complete(
            self.store,
            self.backup_id,
            tables=summary,
            total_rows=total,
            retain_until=self.retain_until.isoformat(),
        )
        return BackupRecord(
            self.backup_id, self.manifest_key, summary, total, self.retain_until.isoformat(), self.object_lock
        )


def reuse_complete(
    store: Engine, company_id: str, run_id: str, source_id: str, progress
) -> BackupRecord | None:
    """The complete backup of this run and source, if one was already taken."""
    existing = catalog.find_complete(store, company_id, run_id, source_id)
    if existing is None:
        return None
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


def open_session(
    *,
    company_id: str,
    run_id: str,
    source_id: str,
    location: S3Location,
    keyring,
    store: Engine,
    retention_days: int,
    object_lock: bool,
    progress=None,
    early: bool = False,
) -> Session:
    """A new backup session. Unless `early`, it is started at once (see `start_session`); with
    `early`, the caller may begin reading the source into its streams first (chunks are sealed and
    queued, none uploaded) and must call `start_session` (e.g. in a thread) before `finish`."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    retain_until = now + dt.timedelta(days=retention_days)
    backup_id = f"bk-{now:%Y%m%dT%H%M%SZ}-{reference_token()}"
    client = None if early else location.client()  # early: made by start_session, off the reading thread
    lock = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until} if object_lock else {}
    uploader = Uploader(client, location, lock)
    uploader.hold()
    session = Session(
        client=client,
        location=location,
        store=store,
        backup_id=backup_id,
        created_at=now,
        retain_until=retain_until,
        manifest_key=location.key(backup_id, "manifest.json"),
        escrow_key=location.key("_escrow", f"{backup_id}.json"),
        data_key=new_data_key(),
        kek_id="",
        retention_days=retention_days,
        object_lock=object_lock,
        uploader=uploader,
        context=dict(company_id=company_id, run_id=run_id, source_id=source_id, keyring=keyring),
    )
    if not early:
        try:
            start_session(session, progress=progress)
        except BaseException:
            uploader.close()
            raise
    return session


def start_session(session: Session, *, progress=None) -> None:
    """Check the bucket (refusing one without Object Lock when asked), abandon a stale attempt of
    the same run, record the backup as started with its wrapped key, write the escrow copy; then
    let the queued chunks go. On failure nothing of this backup is uploaded."""
    ctx, location, store, uploader = session.context, session.location, session.store, session.uploader
    started = False
    try:
        if session.client is None:
            session.client = uploader.client = location.client()
        try:
            ensure_bucket(session.client, location, session.object_lock)
        except (BotoCoreError, ClientError) as exc:
            raise s3_error(location, exc, f"open bucket {location.bucket}") from None
        try:
            stale = catalog.abandon_stale(store, location, ctx["company_id"], ctx["run_id"], ctx["source_id"])
        except (BotoCoreError, ClientError) as exc:
            raise s3_error(location, exc, "clean up an earlier, interrupted backup") from None
        if stale and progress:
            progress(
                f"an earlier attempt of this run died during backup {', '.join(stale)}: marked abandoned, "
                "key destroyed"
            )
        session.kek_id, wrapped = ctx["keyring"].wrap_data_key(session.data_key)
        wrapped_b64 = base64.b64encode(wrapped).decode("ascii")
        catalog.start(
            store,
            backup_id=session.backup_id,
            company_id=ctx["company_id"],
            run_id=ctx["run_id"],
            source_id=ctx["source_id"],
            bucket=location.bucket,
            prefix=location.prefix,
            manifest_key=session.manifest_key,
            object_lock=session.object_lock,
            kek_id=session.kek_id,
            wrapped_key=wrapped_b64,
        )
        started = True
        # the escrow copy of the wrapped key: a separate prefix, never locked, so it can be destroyed
        escrow = {
            "backup_id": session.backup_id,
            "kek_id": session.kek_id,
            "wrapped_key": wrapped_b64,
            "wrap": getattr(ctx["keyring"], "wrap_name", "AES-KW (RFC 3394)"),
            "wrapped_at": session.created_at.isoformat(),
        }
        uploader.put(
            session.escrow_key, json.dumps(escrow).encode(), locked=False, content_type="application/json"
        )
        # inside the try: an upload that failed while the chunks were held surfaces here, and the
        # backup must then be marked failed like any other failure of its start
        uploader.release()
    except BaseException as exc:
        uploader.refuse(exc)
        if started:
            catalog.fail(
                store, session.backup_id, str(exc) if isinstance(exc, DeregError) else type(exc).__name__
            )
        raise
