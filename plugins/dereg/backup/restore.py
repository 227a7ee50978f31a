"""Restore a backup into a scratch database and prove it holds what was backed up.

Every chunk is decrypted (AES-GCM authenticates it, bound to its backup, table, index and position)
and loaded into a scratch SQLite database; then the rows are read back *from that database* and
their hash and count compared with the manifest. The scratch copy is removed afterwards, also when
the restore fails.

The manifest itself comes from the store, so it is trusted only once checked: its MAC under the
data key (version 3; older manifests restore with a warning), the catalog's record of the backup
when there is one, and its names and column types before any reaches SQL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from sqlalchemy.engine import Engine

from dereg.backup import catalog, codec, mysqltext, pgcopy, subjectkeys
from dereg.backup import schema as db_schema
from dereg.backup.codec import (
    GROUP_KEYS_VERSION,
    MAC_VERSION,
    PACK_VERSION,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    associated_data,
    decode_for_scratch,
    encode_row,
    manifest_is_authentic,
    open_sealed,
    pack_associated_data,
    restored_result,
    schema_associated_data,
    scratch_type,
    whole_lines,
)
from dereg.backup.pgcopy import PG_COPY_TEXT
from dereg.connections import S3Location
from dereg.dialects import dialect_for, normalize_url, sqlalchemy_name
from dereg.errors import BackupError, KeyringError

INSERT_BATCH = 2000
#: tables whose first chunk is fetched before the schema is rebuilt (memory: that many chunks)
PREFETCH_TABLES = 8
#: and the next tables' first chunks, as long as their plaintexts add up to no more than this (a
#: database of many small tables then loads without waiting for the store table by table)
PREFETCH_SMALL_BYTES = 8 << 20


@dataclass
class RestoreReport:
    backup_id: str
    ok: bool
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: what was restored but could not be fully checked (e.g. an unauthenticated older manifest)
    warnings: list[str] = field(default_factory=list)
    #: `--into` rebuilt the source's schema (format 4), not only its rows
    schema_rebuilt: bool = False


def _get(client, location: S3Location, key: str) -> bytes:
    return client.get_object(Bucket=location.bucket, Key=key)["Body"].read()


def _wrapped_key(backup_id: str, store: Engine, client, location: S3Location) -> tuple[str, bytes]:
    found = catalog.wrapped_key(store, backup_id)
    if found is not None:
        return found[0], base64.b64decode(found[1])
    try:  # not in this compliance store: fall back to the escrow copy
        escrow = json.loads(_get(client, location, location.key("_escrow", f"{backup_id}.json")))
        return escrow["kek_id"], base64.b64decode(escrow["wrapped_key"])
    except (ClientError, BotoCoreError, ValueError, KeyError):
        raise KeyringError(
            f"no wrapped data key for backup {backup_id} in the compliance store or in "
            f"{location.describe()}/_escrow: the backup cannot be decrypted (it may have been "
            "crypto-shredded)"
        ) from None


def authenticate_manifest(
    manifest: dict, data_key: bytes, *, manifest_key: str, report: RestoreReport | None = None, progress=None
) -> None:
    """Refuse a version 3 manifest whose MAC fails; warn that an older one is unauthenticated."""
    backup_id = manifest.get("backup_id")
    if manifest["version"] >= MAC_VERSION:
        if not manifest_is_authentic(data_key, manifest):
            raise BackupError(
                f"the manifest {manifest_key} of backup {backup_id} fails authentication (its "
                "manifest_mac does not match under the backup's data key): it was altered or replaced "
                "in the store. Nothing was restored; investigate who can write to the bucket."
            )
        return
    warning = (
        f"backup {backup_id} is a version {manifest['version']} backup: its manifest is not "
        "authenticated (no MAC), so a table removed from it or an edited retention would not be "
        "noticed unless the catalog knows the backup; every chunk is still authenticated"
    )
    if report is not None:
        report.warnings.append(warning)
    if progress:
        progress(f"WARNING: {warning}")


def compare_with_catalog(manifest: dict, record: dict, *, manifest_key: str) -> None:
    """The manifest must describe what the catalog recorded when the backup completed: the same
    tables, rows, hashes and chunk counts, and the same retention."""
    if record.get("status") not in ("complete", "shredded") or not record.get("completed_at"):
        return
    recorded = json.loads(record.get("tables_json") or "{}")
    tables = manifest.get("tables") if isinstance(manifest.get("tables"), dict) else {}
    found = {
        name: {"rows": t.get("rows"), "sha256": t.get("sha256"), "chunks": len(t.get("chunks") or [])}
        for name, t in tables.items()
        if isinstance(t, dict)
    }
    differences = sorted(set(recorded) ^ set(found)) + sorted(
        n for n in set(recorded) & set(found) if recorded[n] != found[n]
    )
    retain = record.get("retain_until")
    if retain and manifest.get("retain_until") != retain:
        differences.append(f"retain_until {manifest.get('retain_until')!r} (catalog: {retain!r})")
    if differences:
        raise BackupError(
            f"the manifest {manifest_key} of backup {record['backup_id']} differs from the catalog "
            f"({', '.join(map(str, differences[:10]))}): it was altered in the store. Nothing was restored."
        )


def check_manifest_shape(manifest: dict, *, manifest_key: str) -> None:
    """Table and column names must be non-empty text without NUL before any reaches SQL (always
    quoted); pg_type is checked by pgcopy.checked_pg_type."""

    def bad(what: str) -> BackupError:
        return BackupError(f"the manifest {manifest_key} is malformed ({what}); nothing was restored")

    wrong = codec.unsupported_algorithms(manifest)
    if wrong:
        raise BackupError(
            f"the manifest {manifest_key} names {' and '.join(wrong)}, which this release of dereg cannot "
            f"open (it reads cipher {sorted(codec.CIPHERS)} and compression {sorted(codec.COMPRESSIONS)}); "
            "restore it with the release that wrote it or a newer one; nothing was restored"
        )
    order, tables = manifest.get("table_order"), manifest.get("tables")
    if not isinstance(order, list) or not isinstance(tables, dict):
        raise bad("table_order or tables missing")
    for name in order:
        if not isinstance(name, str) or not name or "\x00" in name or not isinstance(tables.get(name), dict):
            raise bad(f"table {str(name)[:80]!r}")
        spec = tables[name]
        if not isinstance(spec.get("chunks"), list) or not all(isinstance(k, str) for k in spec["chunks"]):
            raise bad(f"chunks of table {name!r}")
        pack = spec.get("pack")
        if pack is not None and not (
            manifest.get("version", 0) >= PACK_VERSION
            and isinstance(pack, dict)
            and isinstance(pack.get("name"), str)
            and all(type(pack.get(k)) is int and pack[k] >= 0 for k in ("first", "offset", "count"))
            and type(spec.get("bytes")) is int
            and spec["bytes"] >= 0
            and pack["first"] + len(spec["chunks"]) <= pack["count"]
        ):
            raise bad(f"pack of table {name!r}")
        for column in spec.get("columns", []):
            col = column.get("name") if isinstance(column, dict) else None
            if not isinstance(col, str) or not col or "\x00" in col:
                raise bad(f"a column of table {name!r}")
        if spec.get("encoding") == PG_COPY_TEXT:
            for column in spec.get("columns", []):
                if column.get("pg_builtin") is True:
                    pgcopy.checked_pg_type(column, table=name)


def refuse_existing_tables(into_url: str, names: list, *, backup_id: str) -> None:
    """`--into` never writes into a table (or view) that is already there: refused before anything
    is restored. `names`: table names of the target's default schema, or (schema, name) pairs."""
    wanted = [n if isinstance(n, tuple) else (None, n) for n in names]
    if not any(s for s, _ in wanted) and mysqltext.reads_natively(into_url):
        existing = {(None, t) for t in mysqltext.existing_tables(into_url)}
        return _refuse_clash(wanted, existing, backup_id)
    if _copies_text(into_url):  # PostgreSQL: one catalog query, no engine and inspector
        return _refuse_clash(wanted, pgcopy.existing_relations(into_url, wanted), backup_id)
    engine = sa.create_engine(normalize_url(into_url))
    try:
        inspector = sa.inspect(engine)
        schemas = set(inspector.get_schema_names()) if any(s for s, _ in wanted) else set()
        existing = set()
        for schema in {s for s, _ in wanted}:
            if schema is not None and schema not in schemas:
                continue
            existing |= {(schema, t) for t in inspector.get_table_names(schema=schema)}
            existing |= {(schema, v) for v in inspector.get_view_names(schema=schema)}
    except sa.exc.SQLAlchemyError as exc:
        raise BackupError(
            f"the target database cannot be used ({type(getattr(exc, 'orig', None) or exc).__name__})"
        ) from None
    finally:
        engine.dispose()
    _refuse_clash(wanted, existing, backup_id)


def _refuse_clash(wanted: list[tuple], existing: set[tuple], backup_id: str) -> None:
    clash = [f"{s}.{n}" if s else n for s, n in wanted if (s, n) in existing]
    if clash:
        raise BackupError(
            f"the target database already has table(s) {', '.join(map(repr, clash[:10]))}: restoring backup "
            f"{backup_id} there would mix rows. Nothing was restored; restore into an empty database "
            "(or drop those tables first)."
        )


def _restored_order(scratch: Engine, table: sa.Table, spec: dict) -> list:
    """Insertion order where the database has it (SQLite's rowid: immune to collation
    differences); else the primary key."""
    insertion = dialect_for(scratch).insertion_order
    if insertion is not None:
        return [sa.literal_column(insertion)]
    return [table.c[name] for name in spec.get("primary_key") or []] or list(table.columns)


class _Chunks:
    """Fetches and opens a table's chunks ahead of the loader, a few at a time on a pool of threads
    (download, AES-GCM and zstd all release the GIL), and yields their plaintexts in order. A chunk
    that cannot be read or fails authentication is recorded as a problem naming table, index and
    object key, and ends the table there; any other error is raised."""

    AHEAD = 6
    PACK_CHUNKS_KEPT = 8

    def __init__(self, pool, client, location: S3Location, backup_id: str, data_key: bytes, version: int):
        import threading
        from collections import OrderedDict

        self.pool, self.client, self.location = pool, client, location
        self.backup_id, self.data_key, self.version = backup_id, data_key, version
        self._lock = threading.Lock()
        self._packs: OrderedDict = OrderedDict()  # pack chunk key -> future of its plaintext
        #: opens the sealed subject rows of a version 5 table (subjectkeys.Unsealer), when it has any
        self.unsealer = None
        self._early: dict[str, Any] = {}  # table -> its first chunk, fetched ahead (`prefetch`)

    def prefetch(self, tables: list[tuple[str, dict]], count: int, small_bytes: int = 0) -> None:
        """Start fetching the first chunk of the first `count` of `tables` (in the order they will
        be read), and of the next ones as long as those first chunks' plaintexts add up to at most
        `small_bytes`, now, while the schema is read and created: each table's load then starts at once. Packed
        tables (version 6) are read through their pack and not fetched here."""
        for number, (name, spec) in enumerate(tables):
            if spec.get("pack") is not None:
                continue
            if number >= count:
                size = min(int(spec.get("bytes") or 0), codec.CHUNK_BYTES)
                if size > small_bytes:
                    break
                small_bytes -= size
            keys = spec["chunks"]
            if keys and name not in self._early:
                self._early[name] = self.pool.submit(self._open, name, 0, keys[0], len(keys) == 1)

    def _open(self, name: str, index: int, key: str, last: bool):
        try:
            blob = _get(self.client, self.location, key)
        except ClientError as exc:
            return f"{name}: chunk {index} ({key}) cannot be read ({exc.response['Error'].get('Code')})"
        try:
            return open_sealed(
                self.data_key, blob, associated_data(self.backup_id, name, index, last, self.version)
            )
        except InvalidTag:
            return (
                f"{name}: chunk {index} ({key}) fails authentication: it was altered, truncated or "
                "belongs to another backup"
            )

    def open_schema(self, section: str, index: int, key: str, last: bool):
        """A schema chunk's plaintext (version 4), or the problem with it."""
        try:
            blob = _get(self.client, self.location, key)
        except ClientError as exc:
            return f"chunk {index} ({key}) cannot be read ({exc.response['Error'].get('Code')})"
        try:
            return open_sealed(
                self.data_key,
                blob,
                schema_associated_data(self.backup_id, section, index, last, self.version),
            )
        except InvalidTag:
            return (
                f"chunk {index} ({key}) fails authentication: it was altered, truncated or belongs to "
                "another backup"
            )

    def _pack_chunk(self, pack: str, index: int, key: str, last: bool):
        """A pack chunk's plaintext (version 6), or the problem with it; the last few are kept,
        since the small tables next to each other in a pack are restored at about the same time."""
        with self._lock:
            opened = self._packs.get(key)
            if opened is None:
                opened = self._packs[key] = self.pool.submit(self._open_pack, pack, index, key, last)
                while len(self._packs) > self.PACK_CHUNKS_KEPT:
                    self._packs.popitem(last=False)
            else:
                self._packs.move_to_end(key)
        return opened.result()

    def _open_pack(self, pack: str, index: int, key: str, last: bool):
        try:
            blob = _get(self.client, self.location, key)
        except ClientError as exc:
            return (
                f"chunk {index} ({key}) of pack {pack} cannot be read ({exc.response['Error'].get('Code')})"
            )
        try:
            return open_sealed(
                self.data_key, blob, pack_associated_data(self.backup_id, pack, index, last, self.version)
            )
        except InvalidTag:
            return (
                f"chunk {index} ({key}) of pack {pack} fails authentication: it was altered, truncated or "
                "belongs to another backup"
            )

    def _packed(self, name: str, spec: dict, problems: list[str]) -> Iterator[bytes]:
        """A packed table's bytes (version 6): its slice of the pack chunks it lists."""
        pack = spec["pack"]
        offset, remaining = pack["offset"], spec["bytes"]
        for number, key in enumerate(spec["chunks"]):
            index = pack["first"] + number
            opened = self._pack_chunk(pack["name"], index, key, index == pack["count"] - 1)
            if isinstance(opened, str):
                problems.append(f"{name}: {opened}")
                return
            piece = opened[offset : offset + remaining]
            offset, remaining = 0, remaining - len(piece)
            yield piece

    def of(self, name: str, spec: dict, problems: list[str]) -> Iterator[bytes]:
        """The table's plaintext pieces in order; a sealed table's (version 5) as plain rows."""
        if spec.get("pack") is not None:
            return self._packed(name, spec, problems)
        if self.unsealer is not None and spec.get("sealed"):
            return self.unsealer.wrap(name, spec, self._stored(name, spec, problems), problems)
        return self._stored(name, spec, problems)

    def _stored(self, name: str, spec: dict, problems: list[str]) -> Iterator[bytes]:
        from collections import deque

        keys = spec["chunks"]
        ahead: deque = deque()
        submitted = 0
        early = self._early.pop(name, None)
        if early is not None:
            ahead.append(early)
            submitted = 1
        try:
            for _ in range(len(keys)):
                while submitted < len(keys) and len(ahead) < self.AHEAD:
                    ahead.append(
                        self.pool.submit(
                            self._open, name, submitted, keys[submitted], submitted == len(keys) - 1
                        )
                    )
                    submitted += 1
                result = ahead.popleft().result()
                if isinstance(result, str):
                    problems.append(result)
                    return
                yield result
        finally:
            for f in ahead:
                f.cancel()


def _restore_table(
    scratch: Engine,
    name: str,
    spec: dict,
    *,
    pieces: Iterator[bytes],
    problems: list[str],
) -> dict[str, Any]:
    """A json-rows table (version 1, or a non-PostgreSQL source) through SQLAlchemy."""
    kinds = [c["kind"] for c in spec["columns"]]
    table = sa.Table(
        name, sa.MetaData(), *[sa.Column(c["name"], scratch_type(c["kind"])) for c in spec["columns"]]
    )
    table.create(scratch)
    # split on b"\n" only: str.splitlines() would also cut at U+2028, U+0085... inside values; a
    # chunk may end inside a line (version 3)
    for index, lines in whole_lines(pieces):
        try:
            rows = [json.loads(line) for line in lines if line]
            with scratch.begin() as conn:
                for start in range(0, len(rows), INSERT_BATCH):
                    batch = rows[start : start + INSERT_BATCH]
                    conn.execute(
                        table.insert(),
                        [
                            {
                                c.name: decode_for_scratch(v, k)
                                for c, v, k in zip(table.columns, row, kinds, strict=True)
                            }
                            for row in batch
                        ],
                    )
        except (sa.exc.SQLAlchemyError, ValueError) as exc:
            # the driver's message quotes the rows: report the error class only (a line cut short
            # by a missing chunk is not JSON: ValueError)
            problems.append(
                f"{name}: rows of chunk {index} ({spec['chunks'][index]}) cannot be loaded into the scratch "
                f"database ({type(getattr(exc, 'orig', None) or exc).__name__})"
            )
            break
    digest, count = hashlib.sha256(), 0
    with scratch.connect() as conn:
        for row in conn.execute(sa.select(*table.columns).order_by(*_restored_order(scratch, table, spec))):
            digest.update(encode_row(row, kinds))
            count += 1
    return restored_result(name, spec, count, digest.hexdigest(), problems)


def _copies_text(url: str | None) -> bool:
    """Whether `url` is a server that loads pg-copy-text tables by COPY (PostgreSQL)."""
    return bool(url) and dialect_for(url).copy_text


def _target_name(manifest: dict, name: str) -> tuple[str | None, str]:
    spec = manifest["tables"][name]
    return (spec.get("schema") if manifest.get("dialect") == "postgresql" else None, spec.get("name") or name)


def _rebuilds_schema(
    manifest: dict, entry: dict | None, into_url: str, report: RestoreReport, progress
) -> bool:
    """Whether `--into` rebuilds the source's schema (a version 4 backup with its schema, into the
    same kind of database); otherwise the rows are restored into plain tables, and it says so."""
    target = sqlalchemy_name(normalize_url(into_url))  # as its engine's dialect would say
    if entry is not None and target == manifest.get("dialect"):
        return True
    if entry is None:
        why = (
            f"backup {manifest.get('backup_id')} is a version {manifest.get('version')} backup, which holds no "
            "schema"
            if manifest.get("version", 0) < SCHEMA_VERSION
            else f"backup {manifest.get('backup_id')} holds no schema ({manifest.get('schema_missing', 'not taken')})"
        )
    else:
        why = f"its schema is {manifest.get('dialect')} SQL and the target is {target}"
    warning = (
        f"{why}: restored data-only, into plain tables (no keys, indexes, constraints, views or triggers; "
        "columns typed by kind)"
    )
    report.warnings.append(warning)
    if progress:
        progress(f"WARNING: {warning}")
    return False


def restore_and_verify(
    backup_id: str,
    *,
    location: S3Location,
    keyring,
    store: Engine,
    into_url: str | None = None,
    scratch_url: str | None = None,
    progress: Callable[[str], None] | None = None,
    tables: list[str] | None = None,
    scratch_schema: str | None = None,
    full_check: bool = False,
) -> RestoreReport:
    """Restore `backup_id` and compare every table with the manifest.

    Where to: `into_url` (kept); else PostgreSQL backups into a scratch schema on `scratch_url`
    (a PostgreSQL server; the schema never outlives the call), falling back to scratch SQLite when
    that server cannot be used; everything else into scratch SQLite (removed afterwards).

    A part of a backup restored on its own (`sources.restore_verify_backup`, one mapped task per
    part): `tables` restricts the restore to those tables of the manifest (the manifest is read
    and checked whole all the same); `scratch_schema`, an existing schema on `scratch_url`, takes
    the part's PostgreSQL tables committed, for the finish to check what spans the parts and drop
    it (`restoreparts`).

    `full_check`: a PostgreSQL restore `into_url` that rebuilds the schema on several connections
    reads every table back whole (by default it checks the bytes loaded, the server's row count and
    the first and last rows read back: `pgcopy.restore_with_schema`)."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.monotonic()
    report = RestoreReport(backup_id=backup_id, ok=False)
    record = catalog.get(store, backup_id)
    if record and record.get("status") in ("shredded", "destroyed", "abandoned"):
        raise BackupError(
            f"backup {backup_id} of {record['company_id']} cannot be restored: it was crypto-shredded (the "
            f"catalog marks it {record['status']}: every copy of its data key was destroyed; the ledger's "
            "retention_sweep or shred entry says when). Nothing was restored."
        )
    client = location.client()
    manifest_key = record["manifest_key"] if record else location.key(backup_id, "manifest.json")
    try:
        manifest = json.loads(_get(client, location, manifest_key))
    except ClientError as exc:
        elsewhere = (
            f"; the catalog has it in s3://{record['bucket']}/{record['prefix']}: pass that to --from"
            if record and (record.get("bucket"), record.get("prefix")) != (location.bucket, location.prefix)
            else ""
        )
        raise BackupError(
            f"the manifest {manifest_key} of backup {backup_id} cannot be read from "
            f"{location.describe()} ({exc.response['Error'].get('Code')}){elsewhere}"
        ) from None
    except BotoCoreError as exc:
        raise BackupError(f"S3 store {location.describe()} is unreachable ({type(exc).__name__})") from None
    except ValueError:
        raise BackupError(f"the manifest {manifest_key} of backup {backup_id} is not valid JSON") from None
    version = manifest.get("version")
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != "dereg-backup"
        or version not in READABLE_VERSIONS
    ):
        known = ", ".join(map(str, READABLE_VERSIONS[:-1])) + f" or {READABLE_VERSIONS[-1]}"
        raise BackupError(
            f"{manifest_key} is not a version {known} Dereg backup manifest (format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r}, version {version!r}); "
            "use a matching Dereg"
        )
    if manifest.get("backup_id") != backup_id:
        raise BackupError(
            f"{manifest_key} is the manifest of {manifest.get('backup_id')}, not of {backup_id}"
        )
    kek_id, wrapped = _wrapped_key(backup_id, store, client, location)
    data_key = keyring.unwrap_data_key(kek_id, wrapped, what=f"the data key of backup {backup_id}")
    authenticate_manifest(manifest, data_key, manifest_key=manifest_key, report=report, progress=progress)
    if record is not None:
        compare_with_catalog(manifest, record, manifest_key=manifest_key)
    check_manifest_shape(manifest, manifest_key=manifest_key)
    schema_entry = (
        db_schema.check_schema_entry(manifest, manifest_key=manifest_key)
        if version >= SCHEMA_VERSION
        else None
    )
    rebuild = False
    if into_url is not None and manifest.get("kind") != "objects":
        rebuild = _rebuilds_schema(manifest, schema_entry, into_url, report, progress)
        refuse_existing_tables(
            into_url,
            [_target_name(manifest, n) for n in manifest["table_order"]]
            if rebuild
            else [n for n in manifest["table_order"] if not manifest["tables"][n].get("partitioned")],
            backup_id=backup_id,
        )
    if manifest.get("kind") == "objects":  # an object source: restored into a scratch directory
        from dereg.backup.objects import restore_objects

        restore_objects(
            manifest, data_key=data_key, client=client, location=location, report=report, progress=progress
        )
        report.ok = not report.problems and all(t["ok"] for t in report.tables.values())
        report.seconds = time.monotonic() - t0
        return report
    # a partitioned table's rows are its partitions' (version 4): restored and checked there
    order = [n for n in manifest["table_order"] if not manifest["tables"][n].get("partitioned")]
    if tables is not None:
        unknown = sorted(set(tables) - set(manifest["table_order"]))
        if unknown:
            raise BackupError(
                f"backup {backup_id} has no table(s) {', '.join(map(repr, unknown[:5]))}: this restore unit "
                "belongs to another backup. Nothing was restored; clear the backup task to list the units again."
            )
        order = [n for n in order if n in set(tables)]
    copy_tables = [n for n in order if manifest["tables"][n].get("encoding") == PG_COPY_TEXT]
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dereg-restore")
    chunks = _Chunks(pool, client, location, backup_id, data_key, version)
    if (manifest.get("subject_keys") or {}).get("enabled"):
        from dereg.backup import groupkeys

        opener = groupkeys.GroupUnsealer if version >= GROUP_KEYS_VERSION else subjectkeys.Unsealer
        try:
            chunks.unsealer = opener.open(
                manifest,
                data_key=data_key,
                store=store,
                client=client,
                location=location,
                get=lambda key: _get(client, location, key),
            )
        except (BotoCoreError, ClientError) as exc:
            pool.shutdown(wait=False, cancel_futures=True)
            raise location.error(exc, f"read the subject keys and blocks of backup {backup_id}") from None
    workdir = None
    scratch = None
    # the largest tables are loaded first (pgcopy's restores); the unsealed ones' first chunks
    # are fetched while the schema is read and created
    by_size = sorted(order, key=lambda n: -int(manifest["tables"][n].get("bytes") or 0))
    chunks.prefetch(
        [(n, manifest["tables"][n]) for n in by_size if not manifest["tables"][n].get("sealed")],
        PREFETCH_TABLES,
        PREFETCH_SMALL_BYTES,
    )
    if rebuild:
        try:
            sections = db_schema.read_sections(schema_entry, chunks.open_schema)
            restore = (
                pgcopy.restore_with_schema
                if schema_entry["encoding"] == db_schema.PG_DUMP_SQL
                else db_schema.restore_statements
            )
            report.tables.update(
                restore(
                    into_url,
                    manifest,
                    sections,
                    order,
                    lambda name, spec: chunks.of(name, spec, report.problems),
                    problems=report.problems,
                    progress=progress,
                    **({"full_check": True} if full_check else {}),
                )
            )
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        report.ok = not report.problems and all(t["ok"] for t in report.tables.values())
        report.schema_rebuilt = report.ok
        if not report.ok:
            report.problems.append("the restore was undone: nothing of it is left in the target database")
        _note_shredded(chunks, report, progress)
        report.seconds = time.monotonic() - t0
        return report
    try:
        pg_target = into_url if _copies_text(into_url) else None
        if pg_target is None and into_url is None and copy_tables and _copies_text(scratch_url):
            pg_target = scratch_url
        if copy_tables and pg_target is not None:
            if progress:
                where = sa.make_url(pg_target)
                progress(
                    f"restore {backup_id}: into {'a scratch schema on ' if into_url is None else ''}PostgreSQL "
                    f"{where.host or 'localhost'}:{where.port or 5432}/{where.database or ''}"
                )

            shared = scratch_schema is not None and into_url is None
            try:
                report.tables.update(
                    pgcopy.restore_into_postgresql(
                        in_schema(pg_target, scratch_schema) if shared else pg_target,
                        manifest,
                        copy_tables,
                        lambda name, spec: chunks.of(name, spec, report.problems),
                        keep=into_url is not None or shared,
                        problems=report.problems,
                        progress=progress,
                    )
                )
            except pgcopy.ScratchUnavailable as exc:
                if into_url is not None:
                    raise BackupError(f"the target database cannot be used ({exc})") from None
                if progress:
                    progress(f"no PostgreSQL scratch schema ({exc}); restoring into scratch SQLite instead")
        rest = [n for n in order if n not in report.tables]
        if rest:
            if into_url is not None:
                target = into_url
            else:
                workdir = Path(tempfile.mkdtemp(prefix="dereg-restore-"))
                target = f"sqlite:///{workdir / 'scratch.db'}"
            scratch = sa.create_engine(normalize_url(target))
            for name in rest:
                spec = manifest["tables"][name]
                pieces = chunks.of(name, spec, report.problems)
                if spec.get("encoding") == PG_COPY_TEXT:
                    if not dialect_for(scratch).loads_copy_text_rows:
                        raise BackupError(
                            f"a PostgreSQL backup restores into PostgreSQL or SQLite, not {sqlalchemy_name(scratch)}"
                        )
                    result = pgcopy.restore_into_sqlite(scratch, name, spec, pieces, problems=report.problems)
                elif spec.get("encoding") == mysqltext.MYSQL_TEXT:
                    if dialect_for(scratch).insertion_order is None:
                        raise BackupError(
                            "a MariaDB/MySQL backup (mysql-text rows) restores into MariaDB/MySQL with its "
                            f"schema, or into SQLite, not into {sqlalchemy_name(scratch)}"
                        )
                    result = mysqltext.restore_into_sqlite(scratch, name, spec, pieces, report.problems)
                else:
                    result = _restore_table(scratch, name, spec, pieces=pieces, problems=report.problems)
                report.tables[name] = result
                if progress:
                    progress(
                        f"restore {name}: {result['restored_rows']}/{result['expected_rows']} rows, "
                        f"{'ok' if result['ok'] else 'MISMATCH'}"
                    )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if scratch is not None:
            scratch.dispose()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    report.tables = {n: report.tables[n] for n in order if n in report.tables}
    report.ok = not report.problems and all(t["ok"] for t in report.tables.values())
    _note_shredded(chunks, report, progress)
    report.seconds = time.monotonic() - t0
    return report


def in_schema(url: str, schema: str) -> str:
    """`url` with `schema` (a plain lower-case name) first on its search path: unqualified tables
    are created and read there."""
    if not schema.replace("_", "").isalnum() or not schema.islower():
        raise BackupError(f"{schema!r} is not a scratch schema name Dereg makes")
    parsed = sa.make_url(url)
    options = " ".join(filter(None, [parsed.query.get("options"), f"-c search_path={schema}"]))
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


def _note_shredded(chunks: _Chunks, report: RestoreReport, progress) -> None:
    """Say which tables had rows of shredded subjects (restored with their personal columns NULL
    or marked, and checked against the hash of exactly that)."""
    shredded = chunks.unsealer.shredded_rows if chunks.unsealer is not None else {}
    for name, rows in sorted(shredded.items()):
        report.tables.get(name, {})["shredded_rows"] = rows
        warning = (
            f"{name}: {rows} row(s) belong to subjects shredded one by one (dereg shred-subject): their "
            "personal columns are restored as NULL (a NOT NULL column as its marker)"
        )
        report.warnings.append(warning)
        if progress:
            progress(f"WARNING: {warning}")
