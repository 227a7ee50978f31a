"""A backup taken in parts, so that several workers (Celery, in separate processes and machines)
share a large source: `prepare_backup`, then `backup_part` for each part in any order and on any
worker, then `finish_backup`.

- `prepare_backup` opens the backup (id, data key wrapped into the keyring, catalog row `started`,
  escrow copy), writes the schema sections and splits the tables into parts (a part per table of
  at least `part_rows` rows, the smaller tables grouped up to that many rows). What the parts and
  the finish need (the parts' tables, the table order, the schema entry, dates) goes into the
  sealed `head` record in the store.
- `backup_part` gets the data key by unwrapping it from the keyring (never from XCom: the caller
  gives only the backup id and the part's index), writes its tables' chunks, waits until every
  chunk is stored, then writes its sealed part record (the manifest entries of its tables). A
  failed part leaves nothing marked and the backup `started`: a retry redoes only that part (its
  chunks are written again under the same names, and the part record last).
- `finish_backup` reads the head and every part record (AES-GCM: a record altered, or taken from
  another backup, does not open), checks that each part is there and holds exactly its tables,
  writes the manifest last (listing exactly the parts' chunks), reads the locks back and marks the
  backup complete.

A killed worker leaves the backup `started`; it never becomes `complete` without every part. The
next `prepare_backup` of the same run abandons it (its key destroyed, see `catalog.abandon_stale`).
The records are sealed objects under `<backup_id>/parts/`, read by no restore: the manifest format
is unchanged (docs/backup-format.md).

Consistency: each part reads its tables in one snapshot (PostgreSQL: one REPEATABLE READ snapshot
per part), but the parts are read at different moments, so tables of different parts may reflect
different moments. A closure's sources are frozen while it runs; erase compares every table it
touches with the backup's hashes (`table_digests`) and refuses on a difference.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.engine import Engine

from dereg.backup import catalog, groupkeys, pgcopy, subjectkeys
from dereg.backup.archive import (
    JSON_ROWS,
    _dump_table,
    _ordered_tables,
    _schema_statements,
    backup_failure,
    check_coverage,
    native_rows,
)
from dereg.backup.codec import FORMAT_VERSION, open_sealed, seal
from dereg.backup.pgcopy import table_key
from dereg.backup.writer import BackupRecord, Session, Uploader, open_session, reuse_complete, s3_error
from dereg.connections import S3Location
from dereg.dialects import dialect_for, sqlalchemy_name
from dereg.errors import BackupError

#: a table of at least this many rows is a part of its own; smaller tables are grouped up to it
DEFAULT_PART_ROWS = 500_000
HEAD = "head"


def part_rows() -> int:
    """Rows per backup part (`DEREG_BACKUP_PART_ROWS`); 0 keeps every table in one part."""
    return int(os.environ.get("DEREG_BACKUP_PART_ROWS", DEFAULT_PART_ROWS))


def plan_parts(tables: list[str], row_counts: dict[str, int], rows_per_part: int) -> list[list[str]]:
    """Split `tables` (in backup order) into parts: one per table of at least `rows_per_part` rows
    (unknown: 0), the others grouped in order, each group up to `rows_per_part` rows. With
    `rows_per_part` <= 0, one part. Never an empty part (an empty source: one empty part). The
    largest parts come first, so that the workers start on them."""
    if rows_per_part <= 0 or not tables:
        return [list(tables)]
    parts: list[list[str]] = []
    group: list[str] = []
    group_rows = 0
    for name in tables:
        rows = max(int(row_counts.get(name, 0) or 0), 0)
        if rows >= rows_per_part:
            parts.append([name])
            continue
        if group and group_rows + rows > rows_per_part:
            parts.append(group)
            group, group_rows = [], 0
        group.append(name)
        group_rows += rows
    if group:
        parts.append(group)

    def size(part: list[str]) -> int:
        return sum(max(int(row_counts.get(name, 0) or 0), 0) for name in part)

    return sorted(parts, key=size, reverse=True)  # largest first: the workers start on them


def record_name(index: int | None) -> str:
    return HEAD if index is None else f"{index:05d}"


def record_associated_data(backup_id: str, name: str) -> bytes:
    """What a part record's GCM tag binds: its own prefix, the backup and the record's name, so no
    chunk can stand in for a record and no record for another one."""
    return f"dereg-backup-part/{FORMAT_VERSION}|{backup_id}|{name}".encode()


def _record_key(location: S3Location, backup_id: str, name: str) -> str:
    return location.key(backup_id, "parts", f"{name}.sealed")


def write_record(session: Session, name: str, body: dict[str, Any]) -> str:
    """Seal `body` under the backup's data key and store it (locked like the chunks), after every
    chunk queued so far is stored."""
    session.uploader.drain()
    key = _record_key(session.location, session.backup_id, name)
    plaintext = json.dumps(body, sort_keys=True).encode()
    session.uploader.put(
        key, seal(session.data_key, plaintext, record_associated_data(session.backup_id, name))
    )
    return key


def read_record(session: Session, name: str) -> dict[str, Any] | None:
    """The sealed record `name` of the session's backup; None when it is not stored."""
    from cryptography.exceptions import InvalidTag

    key = _record_key(session.location, session.backup_id, name)
    try:
        blob = session.client.get_object(Bucket=session.location.bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise s3_error(session.location, exc, f"read {key}") from None
    except BotoCoreError as exc:
        raise s3_error(session.location, exc, f"read {key}") from None
    try:
        return json.loads(
            open_sealed(session.data_key, blob, record_associated_data(session.backup_id, name))
        )
    except (InvalidTag, ValueError):
        raise BackupError(
            f"record {key} of backup {session.backup_id} does not open under its data key: it was altered "
            "or belongs to another backup. Nothing is marked complete; take a new backup (clear "
            "backup_prepare)."
        ) from None


def resume_session(
    backup_id: str, *, store: Engine, location: S3Location, keyring, head: dict | None = None
) -> tuple[Session, dict[str, Any]]:
    """The session of a backup `started` by `prepare_backup`, in this process: its data key
    unwrapped from the keyring (as recorded in the catalog), its dates and parts from its head
    record. Refuses a backup that is not in progress."""
    row = catalog.get(store, backup_id)
    if row is None:
        raise BackupError(
            f"backup {backup_id} is not in the catalog of this compliance store; run backup_prepare "
            "against the same store first."
        )
    if row["status"] != "started":
        raise BackupError(
            f"backup {backup_id} is {row['status']}, not in progress: its parts cannot be written any "
            "more. Clear backup_prepare (and what follows) to take a new backup."
        )
    if (row["bucket"], row["prefix"]) != (location.bucket, location.prefix):
        raise BackupError(
            f"backup {backup_id} is in s3://{row['bucket']}/{row['prefix']}, not in {location.describe()}: "
            "check the manifest's backup connection."
        )
    wrapped = catalog.wrapped_key(store, backup_id)
    if wrapped is None:
        raise BackupError(f"the data key of backup {backup_id} was destroyed; take a new backup.")
    kek_id, wrapped_b64 = wrapped
    data_key = keyring.unwrap_data_key(
        kek_id, base64.b64decode(wrapped_b64), what=f"the data key of backup {backup_id}"
    )
    client = location.client()
    session = Session(
        client=client,
        location=location,
        store=store,
        backup_id=backup_id,
        created_at=dt.datetime.now(dt.UTC),  # set from the head below
        retain_until=dt.datetime.now(dt.UTC),
        manifest_key=row["manifest_key"],
        escrow_key=location.key("_escrow", f"{backup_id}.json"),
        data_key=data_key,
        kek_id=kek_id,
        retention_days=0,
        object_lock=bool(row["object_lock"]),
        uploader=Uploader(client, location, {}),
        context=dict(
            company_id=row["company_id"], run_id=row["run_id"], source_id=row["source_id"], keyring=keyring
        ),
    )
    try:
        head = head if head is not None else read_record(session, HEAD)
        if head is None or head.get("backup_id") != backup_id:
            raise BackupError(
                f"backup {backup_id} has no head record (its backup_prepare did not finish); clear "
                "backup_prepare to take a new backup."
            )
        session.created_at = dt.datetime.fromisoformat(head["created_at"])
        session.retain_until = dt.datetime.fromisoformat(head["retain_until"])
        session.retention_days = int(head["retention_days"])
        if session.object_lock:
            session.uploader.lock = {
                "ObjectLockMode": "COMPLIANCE",
                "ObjectLockRetainUntilDate": session.retain_until,
            }
    except BaseException:
        session.uploader.close()
        raise
    return session, head


def prepare_backup(
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
    rows_per_part: int,
    row_counts: dict[str, int] | None = None,
    classification_summary: dict[str, Any] | None = None,
    personal_tables: list[str] | None = None,
    subjects: Any = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Open the backup of `engine`, write its schema and its head record; returns {"backup_id",
    "parts": [[table, ...], ...], "reused"}. A complete backup of the same run is reused (no parts).
    `subjects`: what to seal under per-subject keys (a `subjectkeys.SealSpec`) or why nothing. A
    sealed backup is one part: its subjects are numbered and its key tree drawn in one snapshot."""
    reused = reuse_complete(store, company_id, run_id, source_id, progress)
    if reused is not None:
        return {"backup_id": reused.backup_id, "parts": [], "reused": True}
    check_coverage(
        engine, source_id=source_id, personal_tables=personal_tables, tables=None, progress=progress
    )
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
    current = ["(schema)"]
    try:
        ordered = _ordered_tables(engine, None)
        if dialect_for(engine).copy_text:  # pg_dump's sections (and the sequences' values), no rows
            _, extra = pgcopy.dump_tables(engine, [], session, current=current, progress=progress)
        else:
            extra = _schema_statements(engine, ordered, session, progress)
        order = [table_key(t) for t in ordered]
        sealer, no_subject_keys = groupkeys.sealer_for(
            subjects, session.backup_id, copy_text=dialect_for(engine).copy_text, engine=engine
        )
        parts = plan_parts(order, row_counts or {}, 0 if sealer is not None else rows_per_part)
        if sealer is not None:
            extra["subject_keys"] = {"enabled": True}  # completed from the part's record
        else:
            extra["subject_keys"] = no_subject_keys
        head = {
            "backup_id": session.backup_id,
            "company_id": company_id,
            "run_id": run_id,
            "source_id": source_id,
            "dialect": sqlalchemy_name(engine),
            "created_at": session.created_at.isoformat(),
            "retain_until": session.retain_until.isoformat(),
            "retention_days": retention_days,
            "table_order": order,
            "parts": parts,
            "extra": extra,
            "seal_spec": subjectkeys.spec_to_json(subjects) if sealer is not None else None,
            "classification_summary": classification_summary or {},
        }
        write_record(session, HEAD, head)
    except BaseException as exc:
        failure = backup_failure(
            exc, source_id=source_id, backup_id=session.backup_id, table=current[0], store=store
        )
        if failure is exc:
            raise
        raise failure from None
    finally:
        session.uploader.close()
    if progress:
        progress(f"backup {session.backup_id}: {len(order)} tables in {len(parts)} part(s)")
    return {"backup_id": session.backup_id, "parts": parts, "reused": False}


def backup_part(
    engine: Engine,
    backup_id: str,
    index: int,
    *,
    store: Engine,
    location: S3Location,
    keyring,
    fast: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write part `index` of the backup `backup_id`: its tables' chunks, then its part record.
    Returns counts: {"backup_id", "part", "tables", "rows", "chunks"}."""
    session, head = resume_session(backup_id, store=store, location=location, keyring=keyring)
    source_id = head["source_id"]
    current = ["(none yet)"]
    sealer = None
    try:
        if not 0 <= index < len(head["parts"]):
            raise BackupError(
                f"backup {backup_id} has {len(head['parts'])} part(s), no part {index}; clear backup_prepare."
            )
        names = head["parts"][index]
        native = native_rows(engine) if fast and not dialect_for(engine).copy_text else None
        if native is not None:  # e.g. MariaDB/MySQL: mysqltext.py, as `create_backup` reads them
            tables = native.list_tables(engine, names) if names else []
        else:
            tables = _ordered_tables(engine, names) if names else []
        part_extra: dict[str, Any] = {}
        if head.get("seal_spec"):
            sealer = groupkeys.GroupSealer(subjectkeys.spec_from_json(head["seal_spec"]), backup_id)
            sealer.session = session
            session.context["sealer"] = sealer
        subject_keys = None
        if dialect_for(engine).copy_text:
            described, _ = pgcopy.dump_tables(
                engine, tables, session, current=current, progress=progress, with_schema=False
            )
            if sealer is not None:
                current[0] = "(subject keys)"
                subject_keys = sealer.finish(session)
        elif native is not None:
            described, part_extra = (
                native.dump_tables(engine, tables, session, current=current, progress=progress)
                if tables
                else ({}, {})
            )
        else:
            described = {}
            for table in tables:
                current[0] = table_key(table)
                described[current[0]] = _dump_table(
                    engine, table, session=session, progress=progress, fast=fast
                )
        current[0] = "(part record)"
        record = {"backup_id": backup_id, "part": index, "tables": described}
        if subject_keys is not None:
            record["subject_keys"] = subject_keys
        if part_extra:
            record["extra"] = part_extra  # e.g. the `mysql` field: how this part's snapshot was taken
        write_record(session, record_name(index), record)
    except BaseException as exc:
        # not marked failed: the backup stays `started`, so a retry of this part can complete it
        failure = backup_failure(exc, source_id=source_id, backup_id=backup_id, table=current[0], store=None)
        if failure is exc:
            raise
        raise failure from None
    finally:
        session.uploader.close()
        if sealer is not None:  # no group writer left running behind a failed part
            sealer.abort()
    rows = sum(t["rows"] for t in described.values() if not t.get("partitioned"))
    chunks = sum(len(t["chunks"]) for t in described.values())
    if progress:
        progress(
            f"backup {backup_id} part {index}: {len(described)} tables, {rows} rows in {chunks} chunk(s)"
        )
    return {"backup_id": backup_id, "part": index, "tables": len(described), "rows": rows, "chunks": chunks}


def finish_backup(
    backup_id: str,
    *,
    store: Engine,
    location: S3Location,
    keyring,
    progress: Callable[[str], None] | None = None,
) -> BackupRecord:
    """Check that every part of `backup_id` is stored and holds exactly its tables, then write the
    manifest (last), read the locks back and mark the backup complete."""
    session, head = resume_session(backup_id, store=store, location=location, keyring=keyring)
    try:
        described: dict[str, dict[str, Any]] = {}
        extra = dict(head["extra"])
        missing = []
        for index, names in enumerate(head["parts"]):
            record = read_record(session, record_name(index))
            if record is None:
                missing.append(f"part {index} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
                continue
            stored = record.get("tables") or {}
            if (
                record.get("backup_id") != backup_id
                or record.get("part") != index
                or set(stored) != set(names)
            ):
                raise BackupError(
                    f"part {index} of backup {backup_id} does not hold the tables its head lists; nothing is "
                    "marked complete. Clear backup_prepare to take a new backup."
                )
            described.update(stored)
            if record.get("subject_keys"):
                extra["subject_keys"] = record["subject_keys"]
            for field, value in (record.get("extra") or {}).items():
                extra.setdefault(field, value)  # a field several parts give: the first part's
        if head.get("seal_spec") and not missing and "scheme" not in extra.get("subject_keys", {}):
            raise BackupError(
                f"backup {backup_id} seals its subjects' rows, but no part recorded their keys; nothing is "
                "marked complete. Clear backup_prepare to take a new backup."
            )
        if missing:
            raise BackupError(
                f"backup {backup_id} is incomplete: {len(missing)} of {len(head['parts'])} part(s) not stored: "
                f"{'; '.join(missing[:10])}. Nothing is marked complete; retry the backup_part task of each "
                "(only those are redone), then this one."
            )
        ordered = {name: described[name] for name in head["table_order"]}
        manifest = {
            **session.common_manifest(
                company_id=head["company_id"], run_id=head["run_id"], source_id=head["source_id"]
            ),
            "dialect": head["dialect"],
            "tables": ordered,
            "table_order": list(ordered),
            "total_rows": sum(t["rows"] for t in ordered.values() if not t.get("partitioned")),
            "serialisation": "per table, see tables.<name>.encoding: pg-copy-text (PostgreSQL COPY text "
            f"format) or {JSON_ROWS} (JSON array per row, UTF-8, newline-terminated, values encoded by kind)",
            **extra,
            "classification_summary": head["classification_summary"],
        }
        record = session.finish(manifest, ordered)
        record.parts = [list(names) for names in head["parts"]]
    finally:
        session.uploader.close()
    if progress:
        progress(
            f"backup {backup_id}: {record.total_rows} rows in {len(record.tables)} tables from "
            f"{len(head['parts'])} part(s), retained until {session.retain_until:%Y-%m-%d}"
        )
    return record
