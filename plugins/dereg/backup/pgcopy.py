"""The PostgreSQL fast path (format version 2, table encoding `pg-copy-text`).

Backup: every table is read by the server itself with `COPY ... TO STDOUT` (text format), in one
REPEATABLE READ, READ ONLY snapshot (like pg_dump; with JOBS connections, the others import it via
`pg_export_snapshot`), under the session settings that fix how values are written out
(`SETTINGS`). The stream goes through a C-level buffer into the chunk stream (hashed, cut at line
ends, sealed and uploaded in the background), so Python sees a few large writes instead of one
call per row, and memory stays flat.

Restore: the chunks are fetched and opened ahead by a pool of threads and fed to
`COPY ... FROM STDIN` into a scratch schema (or a kept target), then the restored table is read back
with `COPY ... TO STDOUT` under the same settings and hashed: the hash and the line count must equal
the manifest's. Each connection's scratch schema lives inside a transaction that is rolled back
(and the schema dropped besides), so it disappears also when the restore fails or the process
dies. Without a usable PostgreSQL server the rows go into scratch SQLite: each field is unescaped,
stored, read back and written out again in the same text format, so the same hash is checked.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import wait as futures_wait
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.backup import schema as db_schema
from dereg.backup.codec import PG_PACK_VERSION, describe_keys, kind_of, restored_result, whole_lines
from dereg.dialects import normalize_url, type_text
from dereg.errors import BackupError

PG_COPY_TEXT = "pg-copy-text"
READ_BLOCK = 1 << 20
# How values are written by COPY TO; the same at backup and at verification, so equal values give
# equal bytes whatever the server's or the role's defaults are.
SETTINGS = {
    "DateStyle": "ISO, MDY",
    "TimeZone": "UTC",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "client_encoding": "UTF8",
    "max_parallel_workers_per_gather": "0",
    "synchronize_seqscans": "off",
}
_INT_TYPES = {"smallint", "integer", "bigint"}
JOBS = int(
    os.environ.get("DEREG_PG_JOBS", "2")
)  # connections reading (backup) or loading (restore) tables at once


class ScratchUnavailable(Exception):
    """The PostgreSQL scratch server cannot be used (unreachable, or no right to create a schema)."""


def _apply_settings(cur) -> None:
    # one round trip for all of them (once per table on a restore's connections)
    cur.execute("".join(f"SET LOCAL {name} TO %s;" for name in SETTINGS), tuple(SETTINGS.values()))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(cur, qualified: str) -> tuple[str, int, list[dict[str, Any]]]:
    cur.execute(
        "SELECT relkind, pg_total_relation_size(oid) FROM pg_class WHERE oid = %s::regclass", (qualified,)
    )
    relkind, pages = cur.fetchone()
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
        "t.typnamespace = 'pg_catalog'::regnamespace, a.attnotnull, a.attgenerated <> '' "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (qualified,),
    )
    return (
        relkind,
        pages,
        [
            {
                "name": n,
                "pg_type": typ,
                "pg_builtin": bool(builtin),
                "not_null": bool(nn),
                "generated": bool(gen),
            }
            for n, typ, builtin, nn, gen in cur.fetchall()
        ],
    )


def _columns_of_all(cur, qualified: list[str]) -> list[tuple[str, int, list[dict[str, Any]]]]:
    """`_columns` of every table in `qualified`, in one round trip. pg_class is read in the
    transaction's snapshot: a table reflected after it was taken but created later is not in it,
    and is refused (the schema pg_dump writes in the same snapshot would lack it)."""
    cur.execute(
        "SELECT q.i, c.relkind, pg_total_relation_size(c.oid), a.attname, "
        "format_type(a.atttypid, a.atttypmod), t.typnamespace = 'pg_catalog'::regnamespace, "
        "a.attnotnull, a.attgenerated <> '' "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS q(name, i) "
        "JOIN pg_class c ON c.oid = q.name::regclass "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        "LEFT JOIN pg_type t ON t.oid = a.atttypid ORDER BY q.i, a.attnum",
        (qualified,),
    )
    found: dict[int, tuple[str, int, list[dict[str, Any]]]] = {}
    for i, relkind, pages, n, typ, builtin, nn, gen in cur.fetchall():
        entry = found.setdefault(i, (relkind, pages, []))
        if n is not None:
            entry[2].append(
                {
                    "name": n,
                    "pg_type": typ,
                    "pg_builtin": bool(builtin),
                    "not_null": bool(nn),
                    "generated": bool(gen),
                }
            )
    missing = [q for i, q in enumerate(qualified, start=1) if i not in found]
    if missing:
        raise BackupError(
            f"table(s) {', '.join(missing[:5])} appeared in the source while the backup started (not in its "
            "snapshot); nothing was backed up. Re-run the backup."
        )
    return [found[i] for i in range(1, len(qualified) + 1)]


def _run_parallel(jobs: list, workers: list, work: Callable) -> None:
    """Run `work(worker, job)` for every job, each worker (a connection) taking the next job when
    free; `work` may return more jobs, queued before the others (e.g. a table's keys once its rows
    are in: the largest table's are then built while the smaller ones load, instead of after them),
    and a free worker waits for them while others still work. The first error is raised
    once all workers have stopped; no job starts after it."""
    import threading
    from collections import deque

    todo = deque(jobs)
    ready = threading.Condition()
    running = [0]
    errors: list[BaseException] = []

    def loop(worker) -> None:
        while True:
            with ready:
                while not todo and running[0] and not errors:
                    ready.wait()
                if errors or not todo:
                    return
                job = todo.popleft()
                running[0] += 1
            more = None
            try:
                more = work(worker, job)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                with ready:
                    errors.append(exc)
            finally:
                with ready:
                    running[0] -= 1
                    if more and not errors:
                        todo.extendleft(reversed(more))
                    ready.notify_all()

    threads = [threading.Thread(target=loop, args=(w,), name="dereg-pg") for w in workers[1:]]
    for t in threads:
        t.start()
    try:
        loop(workers[0])
    finally:
        for t in threads:
            t.join()
    if errors:
        raise errors[0]


def _open_extra(engine: Engine, count: int, setup: Callable) -> list:
    """Up to `count` more raw connections, each prepared by `setup(cursor)`; fewer if refused."""
    extra = []
    for _ in range(count):
        try:
            raw = engine.raw_connection()
        except Exception:  # noqa: BLE001 - the server refuses more connections: fewer workers
            break
        try:
            raw.driver_connection.rollback()
            setup(raw.driver_connection.cursor())
        except Exception:  # noqa: BLE001 - e.g. a server that cannot share snapshots: fewer workers
            raw.close()
            break
        extra.append(raw)
    return extra


def _qualified(schema: str | None, name: str) -> str:
    return (_quote(schema) + "." if schema else "") + _quote(name)


def _copy_sql(qualified: str, relkind: str, columns: list[dict[str, Any]]) -> str:
    names = ", ".join(_quote(c["name"]) for c in columns)
    if relkind == "r":
        return f"COPY {qualified} ({names}) TO STDOUT"
    return f"COPY (SELECT {names} FROM {qualified}) TO STDOUT"  # partitioned, foreign, view: a query


def _copy_out(cur, qualified: str, relkind: str, columns: list[dict[str, Any]], raw: io.RawIOBase) -> None:
    """COPY one table's rows as text into `raw` through a READ_BLOCK buffer: the one statement both
    the backup (into its chunk stream) and erase's check against it (`table_digests`) run, so
    equal rows give equal bytes."""
    buffered = io.BufferedWriter(raw, buffer_size=READ_BLOCK)
    cur.copy_expert(_copy_sql(qualified, relkind, columns), buffered)
    buffered.flush()


# Tables smaller than this (pg_total_relation_size) go into their connection's pack (format version
# 7, docs/backup-format.md) instead of chunks of their own: pagila's twenty small tables then take two
# or three uploads instead of one each (a PUT costs a few milliseconds of botocore's Python, and the
# round trips of the last ones are on the backup's critical path). Sealed (per-subject) tables and a
# partitioned table's parent never are.
PACK_BELOW = 4 << 20


class _PackedTable(io.RawIOBase):
    """One small table's COPY text written on into its connection's pack, hashed and its lines
    counted on the way (the table's own `sha256`, `rows` and `bytes`; the pack cuts and seals)."""

    def __init__(self, pack):
        super().__init__()
        self.pack, self.start = pack, pack.size
        self.digest, self.size, self.newlines = hashlib.sha256(), 0, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self.digest.update(view)
        self.newlines += bytes(view).count(b"\n")
        self.size += len(view)
        return self.pack.write(view)


# Tables at least this large (pg_total_relation_size) are copied out by a psql process when one is
# there: psycopg2 hands Python every row on its own (a call and a GIL round trip each, a third of
# the client's CPU for a large table), psql writes them into a pipe read here a megabyte at a time,
# and it runs on the other core meanwhile. Smaller tables are not worth starting a process for.
PSQL_COPY_BYTES = 8 << 20


class PsqlCopy:
    """COPY ... TO STDOUT by `psql` inside an exported snapshot, under `SETTINGS`: the same bytes
    as `_copy_out` (the server writes them; psql passes them on)."""

    def __init__(self, binary: str, env: dict[str, str], snapshot: str | None, stdbuf: str | None = None):
        self.binary, self.env, self.snapshot, self.stdbuf = binary, env, snapshot, stdbuf

    @classmethod
    def find(cls, url: sa.URL, *, pg_dump: str | None = None, snapshot: str | None = None) -> PsqlCopy | None:
        """The psql beside `pg_dump` (or on PATH) for the server of `url`, reading in `snapshot`
        (or in a transaction of its own); None without one, or with DEREG_PG_PSQL_COPY=0."""
        import shutil

        if os.environ.get("DEREG_PG_PSQL_COPY", "1") == "0":
            return None
        beside = os.path.join(os.path.dirname(pg_dump), "psql") if pg_dump else ""
        binary = beside if beside and os.access(beside, os.X_OK) else shutil.which("psql")
        # psql writes COPY's rows through stdio, which buffers 4 KiB at a time into a pipe: with
        # coreutils' stdbuf a megabyte, so this process reads a few large blocks instead of a
        # write, a wake-up and a read every 4 KiB (a tenth of a second of CPU per 100 MB)
        stdbuf = shutil.which("stdbuf")
        return cls(binary, db_schema.libpq_env(url), snapshot, stdbuf) if binary else None

    def copy_out(self, table: str, sql: str, raw: io.RawIOBase) -> None:
        import subprocess

        def literal(value: str) -> str:
            return "'" + value.replace("'", "''") + "'"

        script = (
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
            + (f"SET TRANSACTION SNAPSHOT {literal(self.snapshot)};\n" if self.snapshot else "")
            + "".join(f"SET LOCAL {name} TO {literal(value)};\n" for name, value in SETTINGS.items())
            + f"{sql};\nCOMMIT;\n"
        )
        # VERBOSITY sqlstate: an error is reported by its code only (a message may quote a row)
        cmd = [self.binary, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=sqlstate", "-f", "-"]
        if self.stdbuf:
            cmd = [self.stdbuf, f"--output={READ_BLOCK}", *cmd]
        proc = subprocess.Popen(
            cmd, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            proc.stdin.write(script.encode())
            proc.stdin.close()
            while block := proc.stdout.read(READ_BLOCK):
                raw.write(block)
            said = proc.stderr.read().decode("utf-8", "replace")
            status = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()
        if status != 0:
            code = re.search(r"\b(?:ERROR|FATAL):\s+([0-9A-Z]{5})\b", said)
            raise BackupError(
                f"reading table {table} by psql failed (status {status}"
                + (f", SQLSTATE {code.group(1)}" if code else "")
                + "). Check that psql can connect with the database's credentials, or set "
                "DEREG_PG_PSQL_COPY=0 to read every table through the driver."
            )


def table_digests(
    conn, tables: list[tuple[str | None, str]]
) -> dict[tuple[str | None, str], tuple[int, str]]:
    """(rows, SHA-256 of the `pg-copy-text` stream) of each (schema, name) in `tables`, as the backup
    hashed them (`dump_tables`): the same COPY under the same `SETTINGS`, hashed as it streams
    (memory stays flat). `conn` is a psycopg2 connection inside the caller's transaction (a
    snapshot, or one holding the tables' locks); the settings are SET LOCAL, so they end with it."""
    cur = conn.cursor()
    _apply_settings(cur)
    found = {}
    for schema, name in tables:
        qualified = _qualified(schema, name)
        relkind, _pages, columns = _columns(cur, qualified)
        hasher = _Hasher()
        _copy_out(cur, qualified, relkind, columns, hasher)
        found[(schema, name)] = (hasher.lines, hasher.digest.hexdigest())
    return found


def table_key(table: sa.Table) -> str:
    """A table's name in the manifest: bare in the default schema, `schema.name` in another."""
    return _key(table.schema, table.name)


def _key(schema: str | None, name: str) -> str:
    return name if schema is None else f"{schema}.{name}"


# The tables SQLAlchemy's reflection of the user schemas finds (`archive._ordered_tables`: tables
# visible through the search path as the default schema's, then every other schema but the
# system ones), read here in the backup's snapshot: ordinary and partitioned tables, partitions
# included, no temporary or foreign ones.
_USER_TABLES = """
SELECT NULL, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND pg_table_is_visible(c.oid)
  AND n.nspname <> 'pg_catalog'
UNION ALL
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND n.nspname NOT LIKE 'pg\\_%%'
  AND n.nspname NOT IN ('information_schema', 'pg_toast') AND n.nspname <> %s
"""


def _snapshot_tables(cur, default_schema: str, only: list[str] | None) -> list[tuple[str | None, str]]:
    """(schema, name) of every user table in the transaction's snapshot (None: the default
    schema), as the reflection finds them; `only` restricts them (manifest names)."""
    cur.execute(_USER_TABLES, (default_schema,))
    found = [(schema, name) for schema, name in cur.fetchall()]
    return found if only is None else [t for t in found if _key(*t) in only]


def _same_tables(reflected: list[sa.Table], copied: list[str]) -> None:
    """The reflected tables must be those the snapshot held: a table created or dropped while the
    backup started refuses it (the schema pg_dump writes in the snapshot would not match)."""
    differ = sorted({table_key(t) for t in reflected} ^ set(copied))
    if differ:
        raise BackupError(
            f"table(s) {', '.join(differ[:5])} appeared in or disappeared from the source while the backup "
            "started (the snapshot and the reflected tables differ); nothing was backed up. Re-run the backup."
        )


def _describe_reflected(entry: dict[str, Any], table: sa.Table) -> None:
    """The manifest entry's column kinds and types and the table's keys, from its reflection."""
    for c in entry["columns"]:
        reflected = table.c.get(c["name"])
        c["kind"] = kind_of(reflected.type) if reflected is not None else "other"
        c["type"] = type_text(reflected.type) if reflected is not None else c["pg_type"]
        c["nullable"] = not c["not_null"]
        c["primary_key"] = bool(reflected is not None and reflected.primary_key)
    entry.update(describe_keys(table))


def dump_tables(
    engine: Engine,
    tables: list[sa.Table] | Callable[[], list[sa.Table]],
    session,
    *,
    current: list[str],
    progress=None,
    with_schema: bool = True,
    only: list[str] | None = None,
    before_reading: Callable[[], None] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """COPY every table of `tables` (reflected, parents first; or a function reflecting them, run
    meanwhile on its own connection while the rows of the tables the snapshot holds, restricted to
    `only`, are copied; both must agree) into the session's chunk streams, on
    up to JOBS connections that share one snapshot (largest tables first); a partitioned table's
    rows are stored once, in its partitions (the parent's are only hashed, for erase's check
    against the backup). With `with_schema`, pg_dump writes the schema in the same snapshot
    meanwhile (schema.py). `before_reading` is called once the snapshot is taken and the
    connections are ready, just before the first rows are read (e.g. to start the work the rows do
    not wait for, without it slowing what they wait for). Returns the manifest's `tables` entries
    and the extra manifest fields."""
    described: dict[str, dict[str, Any]] = {}
    dumper = None
    schema_note = None
    reflecting = None
    if callable(tables):
        # SQLAlchemy's reflection (the manifest's column kinds and keys, and the table order) is
        # slow Python and needs no snapshot: it runs on its own connection while the rows are
        # copied, which needs only the catalog rows read below
        from concurrent.futures import ThreadPoolExecutor

        reflector = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dereg-reflect")
        reflecting = reflector.submit(tables)
        reflector.shutdown(wait=False)
    extra: list = []
    try:
        raw = engine.raw_connection()
    except BaseException:
        if reflecting is not None:
            reflecting.cancel()
            futures_wait([reflecting])
        raise
    try:
        conn = raw.driver_connection
        conn.rollback()  # a clean transaction: the snapshot is taken at its first statement
        cur = conn.cursor()
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        _apply_settings(cur)
        server_version = conn.server_version
        cur.execute("SELECT current_schema()")
        default_schema = cur.fetchone()[0]
        snapshot = None
        binary = db_schema.pg_dump_binary(server_version) if with_schema else None
        if with_schema and binary is None:
            schema_note = (
                f"no pg_dump of major version {server_version // 10000} or later found (set DEREG_PG_DUMP): "
                "the schema is not in this backup, only the rows"
            )
            if progress:
                progress(f"WARNING: {schema_note}")
        if (JOBS > 1 and (callable(tables) or len(tables) > 1)) or binary is not None:
            import psycopg2

            try:
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
            except psycopg2.Error:  # a server that cannot share snapshots: one connection, a fresh one
                conn.rollback()
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                _apply_settings(cur)
        if binary is not None:  # started first: it reads the whole catalog while the rows are copied
            dumper = db_schema.PgDump(engine.url, binary, snapshot)
        idents = (
            _snapshot_tables(cur, default_schema, only)
            if reflecting is not None
            else [(t.schema, t.name) for t in tables]
        )
        qualified_names = [_qualified(schema, name) for schema, name in idents]
        plans = [
            (ident, qualified, *found)
            for ident, qualified, found in zip(
                idents, qualified_names, _columns_of_all(cur, qualified_names), strict=True
            )
        ]
        psql = PsqlCopy.find(engine.url, pg_dump=binary, snapshot=snapshot) if snapshot is not None else None
        if snapshot is not None:

            def join_snapshot(c) -> None:
                c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                c.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
                _apply_settings(c)

            if JOBS > 1 and len(plans) > 1:
                extra = _open_extra(engine, min(JOBS, len(plans)) - 1, join_snapshot)
        if binary is not None:
            sequences = db_schema.pg_sequence_values(cur)
        sealer = session.context.get("sealer")  # per-subject keys (subjectkeys.py), in this snapshot
        # the sealer reads the subjects and link maps first, as a job of its own: the other connection
        # reads a plain table meanwhile; a table the sealer may seal waits for it
        prepared, prepare_failed = threading.Event(), []
        # each connection's pack of small tables (created at its first one) and what went into it
        packs: dict[int, tuple[Any, list[tuple[dict[str, Any], int]]]] = {}
        may_pack = session.version >= PG_PACK_VERSION

        def prepare(worker) -> None:
            try:
                sealer.prepare(
                    worker.driver_connection.cursor(),
                    [_key(*p[0]) for p in plans],
                    {_key(*p[0]): p[4] for p in plans},
                    {_key(*p[0]): p[1] for p in plans},
                )
            except BaseException:
                current[0] = "(subject keys)"
                prepare_failed.append(True)
                raise
            finally:
                prepared.set()

        def dump(worker, plan) -> None:
            if plan is None:
                return prepare(worker)
            (schema, name), qualified, relkind, pages, columns = plan
            key = _key(schema, name)
            if sealer is not None and key in sealer.spec.tables:
                prepared.wait()
                if prepare_failed:
                    return  # the backup fails with the sealer's error
            wcur = worker.driver_connection.cursor()
            sealed = relkind != "p" and sealer is not None and sealer.seals(key)
            # a psql process for a large plain table only, sealed or not (see PSQL_COPY_BYTES)
            by_psql = psql is not None and relkind == "r" and pages >= PSQL_COPY_BYTES
            packed = may_pack and relkind != "p" and not sealed and not by_psql and pages < PACK_BELOW
            # a partitioned table's rows are its partitions': hashed here, stored there
            if relkind == "p":
                stream = _Hasher()
            elif packed:
                if id(worker) not in packs:
                    packs[id(worker)] = (session.pack_stream(secrets.token_hex(6)), [])
                stream = _PackedTable(packs[id(worker)][0])
            else:
                stream = session.stream(key)
            try:
                if sealed:
                    plain_digest = sealer.copy_out(
                        wcur, key, qualified, columns, stream, relkind, psql=psql if by_psql else None
                    )[1]
                elif by_psql:
                    psql.copy_out(key, _copy_sql(qualified, relkind, columns), stream)
                else:
                    _copy_out(wcur, qualified, relkind, columns, stream)
            except BaseException:
                current[0] = key
                raise
            if relkind == "p":
                rows, digest, size, chunks = stream.lines, stream.digest.hexdigest(), None, []
            elif packed:  # its chunks are known once the pack is finished (`place_in_pack`)
                rows, digest, size, chunks = stream.newlines, stream.digest.hexdigest(), stream.size, []
            else:
                stream.finish()
                rows, digest, size, chunks = (
                    stream.newlines,
                    stream.digest.hexdigest(),
                    stream.size,
                    stream.chunks,
                )
            # psycopg2 reports COPY's own count (version 7: the stored stream holds only the rows of
            # no subject, the sealer counts them all, those it put in group blocks too)
            read = sealer.total_rows[key] if sealed and sealer.version >= 7 else rows
            if wcur.rowcount not in (-1, read):
                current[0] = key
                raise RuntimeError(f"COPY of {key} counted {wcur.rowcount} rows, the backup holds {read}")
            described[key] = {
                "encoding": PG_COPY_TEXT,
                "schema": schema or default_schema,
                "name": name,
                "rows": rows,
                "sha256": digest,
                "bytes": size,
                "chunks": chunks,
                "columns": columns,
                **({"partitioned": True} if relkind == "p" else {}),
            }
            if sealed:  # the stored stream is sealed; `sha256` stays the plain rows' hash
                described[key].update(sha256=plain_digest, **sealer.table_entry(key, stream))
            if packed:
                packs[id(worker)][1].append((described[key], stream.start))
            if progress:
                if relkind == "p":
                    progress(f"backup {key}: partitioned, {rows} rows stored in its partitions")
                elif packed:
                    progress(f"backup {key}: {rows} rows in pack {stream.pack.name}")
                else:  # (a sealed table's rows: the manifest's count, not only its stored stream's)
                    progress(f"backup {key}: {described[key]['rows']} rows in {len(chunks)} chunk(s)")

        # largest first, a sealed table weighted (`read_weight`: its rows are cut in this process), so that
        # its group blocks are uploaded once the last of them is done, while other tables are read
        weight = getattr(sealer, "read_weight", 1)
        if before_reading is not None:
            before_reading()
        _run_parallel(
            ([None] if sealer is not None else [])  # the sealer's `prepare` first
            + sorted(
                plans,
                key=lambda p: (
                    -p[3] * (weight if sealer is not None and _key(*p[0]) in sealer.spec.tables else 1)
                ),
            ),
            [raw, *extra],
            dump,
        )
        from dereg.backup.writer import place_in_pack

        for pack, placed in packs.values():
            current[0] = f"(pack {pack.name})"
            pack.finish()
            for entry, start in placed:
                place_in_pack(entry, pack, start)
        if reflecting is not None:
            tables = reflecting.result()
            _same_tables(tables, [_key(*p[0]) for p in plans])
        for table in tables:
            _describe_reflected(described[table_key(table)], table)
        if dumper is not None:
            sections = dumper.wait()
            sections["post-data"] += sequences
            schema_entry = db_schema.write_sections(session, db_schema.PG_DUMP_SQL, sections, pg_dump=binary)
    finally:
        for r in (raw, *extra):
            try:
                r.driver_connection.rollback()
            finally:
                r.close()
        if dumper is not None:
            dumper.join()  # no pg_dump left running behind a failed backup
        if reflecting is not None:
            futures_wait([reflecting])  # nothing left using the engine behind a failed backup
    ordered = {table_key(t): described[table_key(t)] for t in tables}
    extra_fields: dict[str, Any] = {"pg": {"server_version_num": server_version, "copy_settings": SETTINGS}}
    if dumper is not None:
        extra_fields["schema"] = schema_entry
    elif schema_note is not None:
        extra_fields["schema_missing"] = schema_note
    return ordered, extra_fields


class _Feed:
    """What COPY FROM STDIN reads: the plaintext chunks one after the other."""

    def __init__(self, pieces: Iterable[bytes]):
        self._pieces = iter(pieces)
        self.chunk = -1
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        # an error here would reach psycopg2, which turns it into a failed COPY: kept and re-raised
        # by the caller instead, so the real cause (e.g. the store unreachable) is what is reported
        try:
            for piece in self._pieces:
                self.chunk += 1
                if piece:
                    return piece
        except Exception as exc:  # noqa: BLE001
            self.error = exc
        return b""


class _CheckedFeed(_Feed):
    """A `_Feed` that also hashes what it hands to COPY (the backup's bytes, checked against the
    manifest's hash, which also fixes their number of lines: the manifest's `rows`), and keeps the
    stream's first and last bytes for `_round_trip`: at most `HEAD_BYTES`, and the last pieces
    adding up to `TAIL_BYTES` (memory stays flat)."""

    HEAD_BYTES = 64 << 10
    TAIL_BYTES = 1 << 20

    def __init__(self, pieces: Iterable[bytes]):
        super().__init__(pieces)
        self.digest, self.size = hashlib.sha256(), 0
        self.head = b""
        self._tail: list[bytes] = []
        self._tail_bytes = 0
        self.server_rows = -1  # the server's count of the rows COPY stored (its command tag)

    def read(self, size: int = -1) -> bytes:
        piece = super().read(size)
        if piece:
            self.digest.update(piece)
            self.size += len(piece)
            if len(self.head) < self.HEAD_BYTES:
                self.head += piece[: self.HEAD_BYTES - len(self.head)]
            self._tail.append(piece)
            self._tail_bytes += len(piece)
            while self._tail_bytes - len(self._tail[0]) >= self.TAIL_BYTES:
                self._tail_bytes -= len(self._tail.pop(0))
        return piece

    @property
    def tail(self) -> bytes:
        """The stream's last bytes (at least `TAIL_BYTES` of them when it has that many)."""
        return b"".join(self._tail)


class _Capped(io.RawIOBase):
    """Collects what COPY TO writes, up to `limit` bytes (beyond that it only notes the overflow)."""

    def __init__(self, limit: int):
        super().__init__()
        self.data, self.limit, self.overflow = bytearray(), limit, False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(self.data) + len(data) > self.limit:
            self.overflow = True
        else:
            self.data += data
        return len(data)


#: the first rows of each table read back by `_round_trip` (at most), and its last heap pages
ROUND_TRIP_HEAD_ROWS = 64
ROUND_TRIP_TAIL_PAGES = 2


def _round_trip(cur, qualified: str, cols: str, feed: _CheckedFeed) -> bool | None:
    """Whether the table's first rows and the rows of its last heap pages (all its rows when the
    whole stream was kept), as the server writes them back (`COPY ... TO STDOUT` under the
    backup's `SETTINGS`), are exactly the first and last lines of the stream it was loaded from;
    None when no such sample can be taken (a first and a last line too long to be kept, or
    trailing pages without rows): the caller then reads the whole table back. The table was just loaded by one COPY into an empty heap, so a sequential scan (no
    parallel or synchronised scans under `SETTINGS`) returns the rows in load order and its last
    pages hold its last rows."""
    head = feed.head[: feed.head.rfind(b"\n") + 1]
    wanted = head.count(b"\n")
    if wanted > ROUND_TRIP_HEAD_ROWS:
        cut = -1
        for _ in range(ROUND_TRIP_HEAD_ROWS):
            cut = head.index(b"\n", cut + 1)
        head, wanted = head[: cut + 1], ROUND_TRIP_HEAD_ROWS
    if feed.size == 0:
        return True
    tail = feed.tail
    if len(tail) == feed.size:  # the whole stream was kept: the whole table is compared, at once
        rows = _Capped(len(tail))
        cur.copy_expert(f"COPY (SELECT {cols} FROM ONLY {qualified}) TO STDOUT", rows)
        return not rows.overflow and bytes(rows.data) == tail
    cur.execute("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int", (qualified,))
    pages = cur.fetchone()[0]
    first = max(pages - ROUND_TRIP_TAIL_PAGES, 0)
    last = _Capped(len(tail))
    cur.copy_expert(
        f"COPY (SELECT {cols} FROM ONLY {qualified} WHERE ctid >= '({first},0)'::tid) TO STDOUT", last
    )
    if last.overflow or not last.data or not tail.endswith(bytes(last.data)):
        # rows longer than what was kept, or none: not a sample (a mismatch is one)
        return None if last.overflow or not last.data else False
    start = len(tail) - len(last.data)
    if not (start == 0 and feed.size == len(tail)) and tail[start - 1 : start] != b"\n":
        return False  # the rows read back end like the stream, but not at a line's start
    if wanted:
        first_rows = _Capped(len(head))
        cur.copy_expert(f"COPY (SELECT {cols} FROM ONLY {qualified} LIMIT {wanted}) TO STDOUT", first_rows)
        if first_rows.overflow or bytes(first_rows.data) != head:
            return False
    return True


class _Hasher(io.RawIOBase):
    def __init__(self):
        super().__init__()
        self.digest, self.lines = hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        self.lines += bytes(data).count(b"\n")
        return len(data)


# The type names `format_type` writes, and nothing else: the manifest comes from the store, and a
# `pg_type` such as `text); DROP TABLE ...` must never reach the restore server's SQL. A type is a
# (possibly schema-qualified) identifier, bare or double-quoted, or one of the multi-word built-in
# names, with an optional `(n)`/`(p,s)` modifier, a time zone clause and array brackets.
_IDENT = r'(?:[a-z_][a-z0-9_$]*|"(?:[^"\x00]|"")+")'
_MOD = r"\(\d{1,5}(?:,-?\d{1,5})?\)"
_FIELDS = (
    r"(?: (?:year to month|day to (?:hour|minute|second)|hour to (?:minute|second)|minute to second"
    r"|year|month|day|hour|minute|second))?"
)
PG_TYPE = re.compile(
    r"(?:"
    r"(?:time|timestamp)(?:\(\d\))? with(?:out)? time zone"
    rf"|interval{_FIELDS}(?:\(\d\))?"
    rf"|(?:character varying|bit varying|double precision)(?:{_MOD})?"
    rf"|(?:{_IDENT}\.)?{_IDENT}(?:{_MOD})?"
    r")(?:\[\d*\])*"
)


def checked_pg_type(column: dict, *, table: str) -> str:
    """The column's `pg_type` from a manifest, if it is a type name (see PG_TYPE); else BackupError."""
    typ = column.get("pg_type")
    if not isinstance(typ, str) or PG_TYPE.fullmatch(typ) is None:
        raise BackupError(
            f"table {table!r}, column {str(column.get('name'))!r}: the manifest's pg_type is not a "
            "PostgreSQL type name; the manifest was altered. Nothing of it reaches the database."
        )
    return typ


def _scratch_type(column: dict, table: str) -> str:
    # a type of the source's own schema (enum, domain, composite) may not exist on the scratch
    # server: text keeps its exact text form
    return checked_pg_type(column, table=table) if column.get("pg_builtin") is True else "text"


def _constraint_problems(cur, qualified: str, name: str, spec: dict) -> list[str]:
    """What the restored rows break of the source's keys, as far as one scratch table shows it: the
    primary key's uniqueness, and NOT NULL (foreign keys span tables loaded on other connections;
    `--into` a fresh database checks every constraint, see schema.py)."""
    names = {c["name"] for c in spec["columns"]}
    key = [k for k in spec.get("primary_key") or [] if k in names]
    not_null = [c["name"] for c in spec["columns"] if c.get("not_null")]
    terms = []
    if key:
        terms.append(
            f"(SELECT count(*) FROM (SELECT 1 FROM {qualified} GROUP BY {', '.join(map(_quote, key))} "
            "HAVING count(*) > 1) d)"
        )
    if not_null:
        terms.append(
            f"(SELECT count(*) FROM {qualified} WHERE "
            + " OR ".join(f"{_quote(c)} IS NULL" for c in not_null)
            + ")"
        )
    if not terms:
        return []
    cur.execute("SELECT " + ", ".join(terms))
    found = list(cur.fetchone())
    problems = []
    if key and found[0]:
        problems.append(
            f"{name}: {found.pop(0)} primary key value(s) ({', '.join(key)}) occur more than once"
        )
    elif key:
        found.pop(0)
    if not_null and found[0]:
        problems.append(f"{name}: {found[0]} row(s) have NULL in a NOT NULL column ({', '.join(not_null)})")
    return problems


def restore_into_postgresql(
    url: str,
    manifest: dict,
    names: list[str],
    chunks_of: Callable[[str, dict], Iterator[bytes]],
    *,
    keep: bool,
    problems: list[str],
    progress=None,
) -> dict[str, dict[str, Any]]:
    """Load the named pg-copy-text tables into `url` and verify them, on up to JOBS connections
    (largest tables first). `keep`: create them in the target's default schema and commit; else
    each connection loads into its own scratch schema inside a transaction that is never committed
    (and the schema is dropped besides), so no scratch data outlives the call, whatever happens."""
    import psycopg2

    # every column type checked before anything is sent to the server
    column_defs = {
        name: ", ".join(
            f"{_quote(c['name'])} {_scratch_type(c, name)}" for c in manifest["tables"][name]["columns"]
        )
        for name in names
    }
    engine = sa.create_engine(normalize_url(url), hide_parameters=True)
    schemas: dict[int, str] = {}
    results: dict[str, dict[str, Any]] = {}

    def prepare(cur) -> None:
        _apply_settings(cur)
        if not keep:
            schema = f"dereg_scratch_{secrets.token_hex(6)}"
            cur.execute(f"CREATE SCHEMA {_quote(schema)}")
            schemas[id(cur.connection)] = schema

    try:
        try:
            first = engine.raw_connection()
        except (sa.exc.SQLAlchemyError, psycopg2.Error) as exc:
            raise ScratchUnavailable(type(getattr(exc, "orig", None) or exc).__name__) from None
        workers = [first]
        try:
            first.driver_connection.rollback()
            try:
                prepare(first.driver_connection.cursor())
            except psycopg2.Error as exc:
                first.driver_connection.rollback()
                raise ScratchUnavailable(f"{type(exc).__name__}: cannot create a scratch schema") from None
            by_size = sorted(names, key=lambda n: -int(manifest["tables"][n].get("bytes") or 0))
            workers += _open_extra(engine, min(JOBS, len(names)) - 1, prepare)

            def load(worker, name: str) -> None:
                conn = worker.driver_connection
                cur = conn.cursor()
                spec = manifest["tables"][name]
                schema = schemas.get(id(conn))
                qualified = (_quote(schema) + "." if schema else "") + _quote(name)
                count, digest = _load_table(
                    cur,
                    name,
                    spec,
                    qualified,
                    chunks_of(name, spec),
                    problems,
                    into="the scratch database",
                    create=f"CREATE {'' if keep else 'UNLOGGED '}TABLE {qualified} ({column_defs[name]})",
                    copy_options=" WITH (FREEZE)",
                    check=lambda: problems.extend(_constraint_problems(cur, qualified, name, spec)),
                )
                results[name] = restored_result(name, spec, count, digest, problems)
                if progress:
                    progress(_line(name, results[name]))

            _run_parallel(by_size, workers, load)
            if keep:
                for w in workers:
                    w.driver_connection.commit()
        finally:
            for w in workers:
                conn = w.driver_connection
                try:
                    conn.rollback()
                    schema = schemas.get(id(conn))
                    if schema is not None and not conn.closed:  # never committed; dropped anyway
                        conn.cursor().execute(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
                        conn.commit()
                except psycopg2.Error:
                    pass
                finally:
                    w.close()
        return {n: results[n] for n in names if n in results}
    finally:
        engine.dispose()


def _line(name: str, t: dict) -> str:
    return (
        f"restore {name}: {t['restored_rows']}/{t['expected_rows']} rows, {'ok' if t['ok'] else 'MISMATCH'}"
    )


def _load_table(
    cur,
    name: str,
    spec: dict,
    qualified: str,
    chunks: Iterator[bytes],
    problems: list[str],
    *,
    into: str,
    create: str | None = None,
    copy_options: str = "",
    check: Callable[[], None] | None = None,
    read_back: bool = True,
    feed: _Feed | None = None,
) -> tuple[int, str]:
    """Load one table's chunks by COPY under a savepoint (after `create`, if given), read it back
    and hash it as the backup did, then `check` it; returns (rows, sha256). A failure rolls the
    table back and is recorded in `problems` by chunk and error class only (the server's message
    may quote a row). Without `read_back`, a table loaded returns (-1, "") unread (the caller
    reads it back once committed, or checks `feed`, a `_CheckedFeed` of `chunks`)."""
    import psycopg2

    cols = ", ".join(_quote(c["name"]) for c in spec["columns"])
    feed = feed if feed is not None else _Feed(chunks)
    cur.execute("SAVEPOINT dereg_table")
    try:
        if create:
            cur.execute(create)
        cur.copy_expert(f"COPY {qualified} ({cols}) FROM STDIN{copy_options}", feed, size=READ_BLOCK)
        if feed.error is not None:
            raise feed.error
        if isinstance(feed, _CheckedFeed):
            feed.server_rows = cur.rowcount
        if not read_back:
            cur.execute("RELEASE SAVEPOINT dereg_table")
            return -1, ""
        hasher = _Hasher()
        out = io.BufferedWriter(hasher, buffer_size=READ_BLOCK)
        cur.copy_expert(f"COPY {qualified} ({cols}) TO STDOUT", out)
        out.flush()
        if check is not None:
            check()
        cur.execute("RELEASE SAVEPOINT dereg_table")
        return hasher.lines, hasher.digest.hexdigest()
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT dereg_table")
        index = max(feed.chunk, 0)
        key = spec["chunks"][index] if index < len(spec["chunks"]) else "?"
        problems.append(
            f"{name}: rows of chunk {index} ({key}) cannot be loaded into {into} ({type(exc).__name__})"
        )
        return 0, hashlib.sha256().hexdigest()


def _verify_loaded(
    cur, name: str, spec: dict, qualified: str, feed: _CheckedFeed, problems: list[str]
) -> tuple[int, str, bool]:
    """(rows, sha256, whether the whole table must still be read back) of a table just loaded from
    `feed`, in its loading transaction: the rows are the server's count of what COPY stored; the
    hash is that of the bytes COPY took when the server writes the first and last of its rows back
    exactly as they were sent (`_round_trip`), else no hash (a mismatch). Both are then compared
    with the manifest's: bytes that hash as the backup's are its lines, as many as its `rows`, so
    the server must have stored one row for each. Whole: no sample could be taken."""
    import psycopg2

    cols = ", ".join(_quote(c["name"]) for c in spec["columns"])
    try:
        cur.execute("SAVEPOINT dereg_check")
        same = _round_trip(cur, qualified, cols, feed)
        cur.execute("RELEASE SAVEPOINT dereg_check")
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT dereg_check")
        problems.append(f"{name}: its rows cannot be read back from the target ({type(exc).__name__})")
        return feed.server_rows, "", False
    if same is None:
        return -1, "", True
    if not same:
        return feed.server_rows, "", False
    return feed.server_rows, feed.digest.hexdigest(), False


def restore_with_schema(
    url: str,
    manifest: dict,
    sections: dict[str, str],
    names: list[str],
    chunks_of: Callable[[str, dict], Iterator[bytes]],
    *,
    problems: list[str],
    progress=None,
    full_check: bool = False,
) -> dict[str, dict[str, Any]]:
    """Into an empty PostgreSQL database: pre-data, every table's rows by COPY (into its own schema
    and name), each read back and hashed, then post-data (constraints are validated as they are
    added). With one connection (DEREG_PG_JOBS=1) all of it is one transaction, committed only when
    everything loaded and verified. With JOBS connections, pre-data is committed first, the tables
    are loaded on all of them (largest first, each table its own transaction), then post-data's
    keys and indexes, and later its foreign keys, are built on all of them (`pg_post_data_phases`);
    on any failure everything the restore created is dropped again (`_drop_created`). With several
    connections a table is checked by the bytes loaded, the server's count and a sample read back
    (`_verify_loaded`), unless `full_check`: then every table is read back whole, as with one."""

    engine = sa.create_engine(normalize_url(url), hide_parameters=True)
    try:
        raw = engine.raw_connection()
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        raise BackupError(
            f"the target database cannot be used ({type(getattr(exc, 'orig', None) or exc).__name__})"
        ) from None
    try:
        if JOBS <= 1:
            return _restore_with_schema_one(raw, manifest, sections, names, chunks_of, problems, progress)
        return _restore_with_schema_parallel(
            engine, raw, manifest, sections, names, chunks_of, problems, progress, full_check
        )
    finally:
        try:
            raw.driver_connection.rollback()
        finally:
            raw.close()
            engine.dispose()


def existing_relations(url: str, wanted: list[tuple[str | None, str]]) -> set[tuple[str | None, str]]:
    """Which of `wanted` ((schema, or None for the target's default one, name)) already name a
    table or view (partitioned and materialized included) in the PostgreSQL database at `url`: one
    catalog query on a connection made as the engine's would be, without an engine (a restore
    `--into` checks this before anything, then makes its own)."""
    import psycopg2

    parsed = normalize_url(url)
    dialect = parsed.get_dialect()()
    args, params = dialect.create_connect_args(parsed)
    try:
        conn = psycopg2.connect(*args, **params)
    except psycopg2.Error as exc:
        raise BackupError(f"the target database cannot be used ({type(exc).__name__})") from None
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT n.nspname, c.relname, n.nspname = current_schema() "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm') AND c.relname = ANY(%s)",
            ([name for _, name in wanted],),
        )
        found = set()
        for schema, name, default in cur.fetchall():
            found.add((schema, name))
            if default:
                found.add((None, name))
        return {w for w in wanted if w in found}
    finally:
        conn.close()


def _target_of(name: str, spec: dict) -> str:
    return _quote(spec.get("schema") or "public") + "." + _quote(spec.get("name") or name)


def _restore_with_schema_one(raw, manifest, sections, names, chunks_of, problems, progress) -> dict:
    results: dict[str, dict[str, Any]] = {}
    conn = raw.driver_connection
    conn.rollback()
    cur = conn.cursor()
    db_schema.run_pg_section(cur, "pre-data", sections["pre-data"])
    _apply_settings(cur)
    for name in names:
        spec = manifest["tables"][name]
        count, digest = _load_table(
            cur, name, spec, _target_of(name, spec), chunks_of(name, spec), problems, into="the target"
        )
        results[name] = restored_result(name, spec, count, digest, problems)
        if progress:
            progress(_line(name, results[name]))
    if problems:
        conn.rollback()
        return results
    cur.execute("RESET ALL")
    db_schema.run_pg_section(cur, "post-data", sections["post-data"])
    conn.commit()
    return results


# what a restore may create, by catalog (objects of an extension go with it, a schema's with it)
_CREATED_OBJECTS = """
SELECT c, o, (pg_identify_object(c, o, 0)).type, (pg_identify_object(c, o, 0)).identity FROM (
  SELECT 'pg_extension'::regclass AS c, oid AS o, 1 AS rank FROM pg_extension
  UNION ALL SELECT 'pg_namespace'::regclass, oid, 2 FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'
  UNION ALL SELECT 'pg_class'::regclass, oid, 3 FROM pg_class WHERE relkind IN ('r','p','v','m','S','f','c')
  UNION ALL SELECT 'pg_type'::regclass, oid, 4 FROM pg_type WHERE typtype IN ('e','d','r','m')
  UNION ALL SELECT 'pg_proc'::regclass, oid, 5 FROM pg_proc WHERE oid >= 16384
) objects ORDER BY rank, o
"""


def _catalog_objects(cur) -> list[tuple[str, int, str, str]]:
    cur.execute(_CREATED_OBJECTS)
    return [(str(c), int(o), t, i) for c, o, t, i in cur.fetchall()]


def _drop_created(conn, before: set[tuple[str, int]]) -> int:
    """Drop every object of the target that is not in `before` (extensions, then schemas, tables,
    views, sequences, types, functions; CASCADE, so what depends on them goes too); returns how
    many could not be dropped."""
    import psycopg2

    conn.rollback()
    cur = conn.cursor()
    created = [obj for obj in _catalog_objects(cur) if obj[:2] not in before]
    conn.commit()
    for _c, _o, kind, identity in created:
        keyword = "TYPE" if kind in ("composite type", "enum type") else kind.upper()
        try:
            cur.execute(f"DROP {keyword} IF EXISTS {identity} CASCADE")
            conn.commit()
        except psycopg2.Error:
            conn.rollback()
    left = [obj for obj in _catalog_objects(cur) if obj[:2] not in before]
    conn.rollback()
    return len(left)


def _restore_with_schema_parallel(
    engine, raw, manifest, sections, names, chunks_of, problems, progress, full_check=False
) -> dict:
    import psycopg2
    import psycopg2.errors

    results: dict[str, dict[str, Any]] = {}
    conn = raw.driver_connection
    conn.rollback()
    cur = conn.cursor()
    before = {obj[:2] for obj in _catalog_objects(cur)}
    conn.rollback()
    workers = [raw]
    done = False
    try:
        db_schema.run_pg_section(cur, "pre-data", sections["pre-data"])
        conn.commit()
        cur.execute("RESET ALL")
        workers += _open_extra(engine, JOBS - 1, lambda c: None)
        for w in workers:
            w.driver_connection.commit()

        # the psql beside the pg_dump for this server (Debian's /usr/bin/psql is a Perl wrapper
        # that costs a Perl start-up per table read back)
        psql = PsqlCopy.find(engine.url, pg_dump=db_schema.pg_dump_binary(conn.server_version))
        sizes = {
            f"{spec.get('schema') or 'public'}.{spec.get('name') or name}": int(spec.get("bytes") or 0)
            for name, spec in manifest["tables"].items()
        }
        preamble, keys_of, later = db_schema.pg_post_data_by_table(sections["post-data"], sizes)

        def load(worker, name: str) -> list:
            wconn = worker.driver_connection
            wcur = wconn.cursor()
            spec = manifest["tables"][name]
            _apply_settings(wcur)
            qualified = _target_of(name, spec)
            # the rows COPY takes are hashed on their way (the backup's bytes); the
            # server's own count of what it stored, and its reading back of the first and last
            # rows, check what the database holds (`_verify_loaded`)
            feed = _CheckedFeed(chunks_of(name, spec))
            count, digest = _load_table(
                wcur,
                name,
                spec,
                qualified,
                chunks_of(name, spec),
                problems,
                into="the target",
                # emptied in the same subtransaction, so COPY may write the rows frozen
                create=f"TRUNCATE {qualified}",
                copy_options=" WITH (FREEZE)",
                read_back=False,
                feed=feed,
            )
            whole = False
            if count == -1 and full_check:  # asked for: every row read back, as with one connection
                whole = True
            elif count == -1:
                count, digest, whole = _verify_loaded(wcur, name, spec, qualified, feed, problems)
            wconn.commit()
            if whole:  # no sample could be taken: the whole table is read back, by psql when large
                hasher = _Hasher()
                cols = ", ".join(_quote(c["name"]) for c in spec["columns"])
                sql = f"COPY {qualified} ({cols}) TO STDOUT"
                if psql is not None and int(spec.get("bytes") or 0) >= PSQL_COPY_BYTES:
                    psql.copy_out(name, sql, hasher)
                else:
                    _apply_settings(wcur)
                    wcur.copy_expert(sql, io.BufferedWriter(hasher, buffer_size=READ_BLOCK))
                    wconn.commit()
                count, digest = hasher.lines, hasher.digest.hexdigest()
            results[name] = restored_result(name, spec, count, digest, problems)
            if progress:
                progress(_line(name, results[name]))
            # the table's keys and indexes are built as soon as its rows are in and checked, by
            # whichever connection is free, while the other tables load
            group = keys_of.pop((spec.get("schema") or "public", spec.get("name") or name), None)
            return [group] if group and not problems and results[name]["ok"] else []

        def build(worker, group: list[tuple[str, str]]) -> None:
            wconn = worker.driver_connection
            wcur = wconn.cursor()
            if preamble.strip():  # session settings: they last until the RESET below
                wcur.execute(preamble)
                wconn.commit()
            for what, statements in group:
                for attempt in range(5):
                    try:
                        wcur.execute(statements)
                        wconn.commit()
                        break
                    except psycopg2.errors.DeadlockDetected as exc:  # two tables' keys locked crosswise
                        wconn.rollback()
                        if attempt == 4:
                            raise db_schema.pg_item_error("post-data", what, exc) from None
                    except psycopg2.Error as exc:
                        wconn.rollback()
                        raise db_schema.pg_item_error("post-data", what, exc) from None
            wcur.execute("RESET ALL")  # the preamble's settings end with the group (a load may follow)
            wconn.commit()

        def step(worker, job: tuple[str, Any]) -> list:
            kind, what = job
            if kind == "load":
                return [("build", group) for group in load(worker, what)]
            build(worker, what)
            return []

        by_size = sorted(names, key=lambda n: -int(manifest["tables"][n].get("bytes") or 0))
        _run_parallel([("load", n) for n in by_size], workers, step)
        if problems or not all(r["ok"] for r in results.values()):
            return results
        # keys of tables with no rows of their own (a partitioned parent), then the later phases
        for groups in [list(keys_of.values()), *later]:
            if groups:
                _run_parallel([("build", g) for g in groups], workers, step)
        done = True
        return results
    finally:
        for w in workers[1:]:
            try:
                w.driver_connection.rollback()
            finally:
                w.close()
        if not done:
            left = _drop_created(conn, before)
            if left:
                problems.append(
                    f"{left} object(s) the restore created could not be dropped again; drop the target database"
                )


# --- the SQLite fallback: COPY text <-> values ------------------------------------------------
_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_SIMPLE_ESCAPES = tuple((b"\\" + k, v) for k, v in _ESCAPES.items())
_OTHER_ESCAPE = re.compile(rb"\\[^bfnrtv]|\\$")
_ESCAPE_RE = re.compile(rb"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.DOTALL)
_OUT = str.maketrans(
    {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
)


def _unescape_match(m: re.Match) -> bytes:
    s = m.group(1)
    if s in _ESCAPES:
        return _ESCAPES[s]
    if s[:1] == b"x" and len(s) > 1:
        return bytes([int(s[1:], 16)])
    if s[:1].isdigit():
        return bytes([int(s, 8) & 0xFF])
    return s


def unescape_field(field: bytes) -> str | None:
    """One field of a COPY text line as text (None for SQL NULL)."""
    if field == b"\\N":
        return None
    if b"\\" in field:
        # COPY TO writes only the seven escapes: undone by a few bytes.replace passes (a huge value
        # with millions of tabs would make millions of objects through the regex); octal, hex or
        # any other escape takes the general path
        parts = field.split(b"\\\\")
        if any(_OTHER_ESCAPE.search(part) or part.endswith(b"\\") for part in parts):
            field = _ESCAPE_RE.sub(_unescape_match, field)
        else:
            for i, part in enumerate(parts):
                if b"\\" in part:
                    for escaped, char in _SIMPLE_ESCAPES:
                        part = part.replace(escaped, char)
                    parts[i] = part
            field = b"\\".join(parts)
    return field.decode("utf-8")


def escape_field(value: str | None) -> str:
    """The inverse, as COPY TO writes it (only these seven characters are escaped)."""
    return "\\N" if value is None else value.translate(_OUT)


def _sqlite_kind(column: dict) -> str:
    typ = column.get("pg_type", "")
    if typ in _INT_TYPES:
        return "INTEGER"
    if typ == "bytea":
        return "BLOB"
    return "TEXT"


def restore_into_sqlite(
    scratch: Engine,
    name: str,
    spec: dict,
    pieces: Iterable[bytes],
    *,
    problems: list[str],
) -> dict[str, Any]:
    """Load one pg-copy-text table into SQLite (integers as INTEGER, bytea as BLOB, the rest as the
    exact text), read it back in insertion order, write it out as COPY text again and hash that."""
    kinds = [_sqlite_kind(c) for c in spec["columns"]]
    table = _quote(name)
    cols = ", ".join(_quote(c["name"]) for c in spec["columns"])

    def to_value(text: str | None, kind: str):
        if text is None or kind == "TEXT":
            return text
        if kind == "INTEGER":
            return int(text)
        return bytes.fromhex(text[2:])  # bytea, hex output: \x...

    def to_text(value, kind: str) -> str:
        if value is None:
            return "\\N"
        if kind == "INTEGER":
            return str(value)
        if kind == "BLOB":
            return "\\\\x" + bytes(value).hex()
        return escape_field(value)

    raw = scratch.raw_connection()
    try:
        db: sqlite3.Connection = raw.driver_connection
        db.execute(
            f"CREATE TABLE {table} ("
            + ", ".join(f"{_quote(c['name'])} {k}" for c, k in zip(spec["columns"], kinds, strict=True))
            + ")"
        )
        insert = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(kinds))})"
        for _index, lines in whole_lines(pieces):  # a chunk may end inside a line (version 3)
            try:
                db.executemany(
                    insert,
                    (
                        [
                            to_value(unescape_field(f), k)
                            for f, k in zip(line.split(b"\t"), kinds, strict=True)
                        ]
                        for line in lines
                    ),
                )
            except (ValueError, sqlite3.Error) as exc:
                problems.append(
                    f"{name}: rows cannot be loaded into the scratch database ({type(exc).__name__})"
                )
                break
        db.commit()
        digest, count = hashlib.sha256(), 0
        for row in db.execute(f"SELECT {cols} FROM {table} ORDER BY rowid"):
            digest.update(("\t".join(to_text(v, k) for v, k in zip(row, kinds, strict=True)) + "\n").encode())
            count += 1
    finally:
        raw.close()
    return restored_result(name, spec, count, digest.hexdigest(), problems)
