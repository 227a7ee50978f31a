"""Back up one SQL source: which tables, in which order, read how; the writing is writer.py's.

Rows are streamed table by table (memory does not grow with table size): tables of a server that
speaks PostgreSQL's COPY text as that text (pgcopy.py, format version 2, one snapshot for the
whole backup), those of a dialect with a native row path in its own encoding (`NATIVE_ROWS`:
MariaDB/MySQL as mysql-text, mysqltext.py, format version 5), other sources as JSON lines (through a dialect's raw-cursor fast reader, rowfast.py,
where it has one; the rest through SQLAlchemy). The session (writer.py) hashes, chunks, seals and
uploads the streams; the backup is recorded as complete in the catalog only after every object is
uploaded and its lock has been read back. Format: docs/backup-format.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.backup import catalog, groupkeys, mysqltext, pgcopy, rowfast
from dereg.backup import schema as db_schema
from dereg.backup.codec import describe_columns, describe_keys, encode_row, kind_of
from dereg.backup.pgcopy import table_key
from dereg.backup.subjectkeys import SealSpec
from dereg.backup.writer import BackupRecord, Session, open_session, reuse_complete, start_session
from dereg.connections import S3Location
from dereg.dialects import dialect_for, sqlalchemy_name
from dereg.dialects.base import TableIdent
from dereg.errors import BackupError, DeregError
from dereg.redact import database_error

STREAM_BATCH = 2000
JSON_ROWS = "json-rows"
#: a dialect's `native_rows` -> the module that reads (`dump_tables`, `table_digests`) and restores
#: its tables in its own encoding
NATIVE_ROWS = {mysqltext.MYSQL_TEXT: mysqltext}


def native_rows(engine: Engine):
    """The native row module for `engine` (its dialect's `native_rows`, when its driver is there)."""
    dialect = dialect_for(engine)
    if dialect.native_rows is None or not dialect.has_native_rows(engine):
        return None
    return NATIVE_ROWS.get(dialect.native_rows)


def _ordered_tables(engine: Engine, only: list[str] | None) -> list[sa.Table]:
    """Every table of every user schema (PostgreSQL: all but the system ones; elsewhere the default
    one), parents before children; `only` restricts them (manifest names, `schema.name` outside the
    default schema)."""
    metadata = sa.MetaData()
    for schema in dialect_for(engine).user_schemas(sa.inspect(engine)):
        metadata.reflect(engine, schema=schema)
    tables = list(metadata.sorted_tables)  # parents before children
    if only is not None:
        missing = sorted(set(only) - {table_key(t) for t in tables})
        if missing:
            raise BackupError(f"tables {missing} do not exist in the source")
        tables = [t for t in tables if table_key(t) in only]
    return tables


def check_coverage(
    engine: Engine, *, source_id: str, personal_tables: list[str] | None, tables: list[str] | None, progress
) -> None:
    """A backup covers every user schema (see `_ordered_tables`), or the `tables` it is restricted
    to. A table classification found personal data in that is not among them refuses the backup,
    naming it: it would be erased without a way back."""
    if tables is None or not personal_tables:
        return
    default = sa.inspect(engine).default_schema_name
    missing = []
    for name in personal_tables:
        bare = name[len(default) + 1 :] if default and name.startswith(f"{default}.") else name
        if name not in tables and bare not in tables:
            missing.append(name)
    if missing:
        raise BackupError(
            f"source {source_id!r}: classification found personal data in {', '.join(sorted(missing)[:20])}, "
            "which the backup does not include (it is restricted to the tables it was given). Refusing "
            "rather than erasing them without a backup: back up every table, or leave those out of the "
            "erasure in the company manifest, then re-run."
        )


def stream_rows(
    bind: Engine | sa.Connection, table: sa.Table, write: Callable[[bytes], Any], *, fast: bool = True
) -> int:
    """Write `table`'s rows as `json-rows` lines to `write`, a batch per call, ordered by primary
    key (or every column); returns the row count. The one reader of this encoding: the backup
    streams it into its chunks, erase's check against the backup (`table_digests`) into a hash.
    Through the fast raw-cursor reader where the dialect has one (rowfast.py) unless `fast` is
    False or `bind` is a `Connection`, else through SQLAlchemy: both write the same bytes."""
    if fast and isinstance(bind, Engine) and rowfast.supports(bind):
        return rowfast.stream_rows(bind, table, write)
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return stream_rows(conn, table, write, fast=False)
    columns = list(table.columns)
    kinds = [kind_of(c.type) for c in columns]
    order = list(table.primary_key.columns) or columns
    rows = 0
    result = bind.execution_options(yield_per=STREAM_BATCH).execute(sa.select(*columns).order_by(*order))
    for partition in result.partitions():
        write(b"".join(encode_row(row, kinds) for row in partition))
        rows += len(partition)
    return rows


def table_digests(
    bind: Engine | sa.Connection, tables: list[TableIdent]
) -> dict[TableIdent, tuple[int, str]]:
    """(rows, SHA-256) of each (schema, name) in `tables` as a backup taken now would record them in
    its manifest and the catalog (`tables.<name>.rows` / `sha256`): the same encoding the backup
    chooses for this database, read and hashed by the same code while it streams (memory stays
    flat). A server that speaks COPY text (`pg-copy-text`) is read in one REPEATABLE READ, READ
    ONLY snapshot, or, given a `Connection`, inside that connection's transaction (e.g. one that
    holds the tables' locks); other databases as `json-rows`, table by table (given a
    `Connection`, through it, on the generic path: the same bytes)."""
    if dialect_for(bind).copy_text:
        if isinstance(bind, sa.Connection):
            return pgcopy.table_digests(bind.connection.driver_connection, tables)
        raw = bind.raw_connection()
        try:
            conn = raw.driver_connection
            conn.rollback()  # a clean transaction: the snapshot is taken at its first statement
            conn.cursor().execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return pgcopy.table_digests(conn, tables)
        finally:
            try:
                raw.driver_connection.rollback()
            finally:
                raw.close()
    native = native_rows(bind) if isinstance(bind, Engine) else None
    if native is not None:  # the encoding a backup taken now would use
        return native.table_digests(bind, tables)
    found = {}
    for schema, name in tables:
        digest = hashlib.sha256()
        table = sa.Table(name, sa.MetaData(), schema=schema, autoload_with=bind)
        found[(schema, name)] = (stream_rows(bind, table, digest.update), digest.hexdigest())
    return found


def _dump_table(
    engine: Engine,
    table: sa.Table,
    *,
    session: Session,
    progress,
    fast: bool = True,
) -> dict[str, Any]:
    """Rows as JSON lines (`json-rows`): through the fast raw-cursor reader on MariaDB/MySQL (PyMySQL)
    and SQLite (rowfast.py) unless `fast` is False, else through SQLAlchemy (the generic path, for
    every other database). Both write the same bytes."""
    kinds = [kind_of(c.type) for c in table.columns]
    key = table_key(table)
    stream = session.stream(key)
    rows = stream_rows(engine, table, stream.write, fast=fast)
    stream.finish()
    if progress:
        progress(f"backup {key}: {rows} rows in {len(stream.chunks)} chunk(s)")
    return {
        "encoding": JSON_ROWS,
        "name": table.name,
        "rows": rows,
        "sha256": stream.digest.hexdigest(),
        "bytes": stream.size,
        "chunks": stream.chunks,
        "columns": describe_columns(table, kinds),
        **describe_keys(table),
    }


def _schema_statements(engine: Engine, ordered: list[sa.Table], session: Session, progress) -> dict[str, Any]:
    """The `schema` manifest entry of a MariaDB/MySQL or SQLite source (PostgreSQL's is pgcopy's)."""
    name = sqlalchemy_name(engine)
    reader = db_schema.STATEMENT_READERS.get(dialect_for(engine).schema_reader or "")
    sections = None
    if reader is db_schema.mysql_statements and native_rows(engine) is not None:
        # the native driver: no SQLAlchemy connection, a round trip per kind of statement
        sections = db_schema.mysql_statements_native(engine.url, [t.name for t in ordered])
    elif reader is not None:
        with engine.connect() as conn:
            sections = reader(conn, [t.name for t in ordered])
    if sections is None:
        if progress:
            progress(f"WARNING: the schema of a {name} source is not backed up, only its rows")
        return {"schema_missing": f"the schema of a {name} source is not backed up"}
    return {
        "schema": db_schema.write_sections(
            session, db_schema.SQL_STATEMENTS, sections, dialect=sqlalchemy_name(engine)
        )
    }


def backup_failure(
    exc: BaseException, *, source_id: str, backup_id: str, table: str, store: Engine | None
) -> BaseException:
    """What a backup that failed while `table` was read raises instead of `exc`: a `BackupError`
    whose message holds no stored value (a driver's message may quote a row). With `store`, the
    backup is marked failed in the catalog first; without (one part of a backup taken in parts,
    see parts.py), it stays in progress, so a retry of that part can still complete it."""
    then = (
        "The backup is marked failed; re-run the task."
        if store is not None
        else "This part is not stored and the backup stays incomplete; retry this part's task."
    )

    def failed(reason: str) -> None:
        if store is not None:
            catalog.fail(store, backup_id, reason)

    if isinstance(exc, DeregError):
        failed(str(exc))
        return exc
    if isinstance(exc, sa.exc.SQLAlchemyError):
        reason = database_error(exc, table)  # a driver's message may quote a row
        failed(reason)
        return BackupError(
            f"reading source {source_id!r} failed during backup {backup_id}: {reason[:300]}. {then}"
        )
    if isinstance(exc, Exception):
        if getattr(exc, "pgcode", None) is not None:  # psycopg2, from the COPY path
            reason = database_error(exc)
            failed(reason)
            return BackupError(
                f"reading source {source_id!r} failed during backup {backup_id} in table {table}: "
                f"{reason[:300]}. {then}"
            )
        # e.g. a driver or type processor that cannot parse a stored value: its message may quote the
        # value, so only its type is reported
        failed(f"{type(exc).__name__} in table {table}")
        return BackupError(
            f"backup {backup_id} of source {source_id!r} failed in table {table} ({type(exc).__name__}; "
            "the message is withheld because it may quote a stored value). Check that table's column "
            f"types against its contents. {then}"
        )
    failed(f"{type(exc).__name__}")
    return exc


def _native_tables(native, engine: Engine, tables, session: Session, current: list[str], progress):
    """Every table through a dialect's native row path (NATIVE_ROWS), the schema statements read
    meanwhile on their own connection; returns the manifest's tables and extra fields."""
    from concurrent.futures import ThreadPoolExecutor

    ordered = native.list_tables(engine, tables)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dereg-schema") as pool:
        schema = pool.submit(_schema_statements, engine, ordered, session, progress)
        described, extra = native.dump_tables(engine, ordered, session, current=current, progress=progress)
        current[0] = "(schema)"
        return described, {**extra, **schema.result()}


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
    fast: bool = True,
    personal_tables: list[str] | None = None,
    subjects: SealSpec | str | None = None,
    subject_scheme: str = "groups",
) -> BackupRecord:
    """Back up every table of `engine` (or `tables`); a complete backup of the same run is reused.

    PostgreSQL tables go through the server's COPY (one snapshot for the whole backup); other
    databases as JSON lines, read through the raw driver cursor on MariaDB/MySQL and SQLite, or
    through SQLAlchemy for the rest (or everywhere with `fast=False`, for comparison: same bytes).
    `personal_tables`: tables classification found personal data in (as it names them); the backup
    refuses when one of them is outside what it covers (see `check_coverage`).
    `subjects`: what to seal under per-subject keys (subjectkeys.py; PostgreSQL sources), or why
    the backup has none (recorded in the manifest's `subject_keys`). `subject_scheme`: "groups" (format
    version 7, subject group blocks, groupkeys.py) or "ggm" (version 6, one key per subject, kept to
    compare them)."""
    reused = reuse_complete(store, company_id, run_id, source_id, progress)
    if reused is not None:
        return reused
    check_coverage(
        engine, source_id=source_id, personal_tables=personal_tables, tables=tables, progress=progress
    )
    native = native_rows(engine) if fast else None  # e.g. MariaDB/MySQL: mysqltext.py
    early = dialect_for(engine).copy_text or native is not None  # the server writes the rows
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
        early=early,
    )
    backup_id = session.backup_id
    # only the PostgreSQL COPY path seals; MariaDB's native text rows (also `early`) do not
    sealer, no_subject_keys = groupkeys.sealer_for(
        subjects, backup_id, copy_text=dialect_for(engine).copy_text, engine=engine, scheme=subject_scheme
    )
    if sealer is not None:
        session.context["sealer"] = sealer
        session.version = sealer.version
        sealer.session = session
    current = ["(none yet)"]
    try:
        extra: dict[str, Any] = {}
        if early:
            # the store is checked and the backup recorded while the source is already being read
            # (its chunks are sealed and queued, none uploaded before that check passed); on
            # PostgreSQL from when the snapshot is taken and the first COPY about to start, so that
            # its Python work (botocore's import and client, the catalog) does not hold up the
            # server's first rows
            from concurrent.futures import ThreadPoolExecutor

            started: list = []

            def start_store() -> None:
                if not started:
                    starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dereg-start")
                    started.append(starter.submit(start_session, session, progress=progress))
                    starter.shutdown(wait=False)

            try:
                if native is not None:
                    start_store()
                    described, extra = _native_tables(native, engine, tables, session, current, progress)
                else:  # read by the server's COPY, see pgcopy.py
                    described, extra = pgcopy.dump_tables(
                        engine,
                        lambda: _ordered_tables(engine, tables),
                        session,
                        current=current,
                        progress=progress,
                        only=tables,
                        before_reading=start_store,
                    )
            except BaseException:
                if started and started[0].exception() is not None:
                    raise started[0].exception() from None  # the store's refusal explains the rest
                raise
            start_store()
            started[0].result()
        else:
            described = {}
            ordered = _ordered_tables(engine, tables)
            for table in ordered:
                current[0] = table_key(table)
                described[table_key(table)] = _dump_table(
                    engine, table, session=session, progress=progress, fast=fast
                )
            current[0] = "(schema)"
            extra = _schema_statements(engine, ordered, session, progress)
        extra["subject_keys"] = sealer.finish(session) if sealer is not None else no_subject_keys
        total = sum(t["rows"] for t in described.values() if not t.get("partitioned"))
        manifest = {
            **session.common_manifest(company_id=company_id, run_id=run_id, source_id=source_id),
            "dialect": sqlalchemy_name(engine),
            "tables": described,
            "table_order": list(described),
            "total_rows": total,
            "serialisation": "per table, see tables.<name>.encoding: pg-copy-text (PostgreSQL COPY text "
            "format) or json-rows (JSON array per row, UTF-8, newline-terminated, values encoded by kind)",
            **extra,
            "classification_summary": classification_summary or {},
        }
        record = session.finish(manifest, described)
    except BaseException as exc:
        failure = backup_failure(exc, source_id=source_id, backup_id=backup_id, table=current[0], store=store)
        if failure is exc:
            raise
        raise failure from None
    finally:
        session.uploader.close()
        if hasattr(sealer, "abort"):  # no group writer left running behind a failed backup
            sealer.abort()
    if progress:
        progress(
            f"backup {backup_id}: {record.total_rows} rows in {len(record.tables)} tables, "
            f"retained until {session.retain_until:%Y-%m-%d}"
        )
    return record
