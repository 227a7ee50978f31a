"""PostgreSQL (psycopg2): every user schema, COPY for full scans and backups, TRUNCATE, VACUUM FULL.

Full scans read each table as the server's COPY text (one large stream instead of a row per call);
backups take the COPY path of backup/pgcopy.py (`copy_text`); pseudonymization sends a batch by
COPY into a temporary table and one UPDATE joins it; whole tables the plan empties go in one
TRUNCATE; purge is `VACUUM (FULL, ANALYZE)` and CHECKPOINT; verification counts dead tuples; the
ledger's writers queue on a table lock.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dereg.dialects.base import Dialect, Findings, TableIdent, quote_table, shown_name, table_ident

_SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "pg_toast"})


class PostgreSQL(Dialect):
    name = "postgresql"
    sqlalchemy_names = frozenset({"postgresql"})
    connection_types = frozenset({"postgres", "postgresql"})
    residual_risks = (
        "WAL segments and archived WAL still holding the old row versions until recycled",
        "streaming or logical replicas and their WAL",
        "the database's own base backups and snapshots",
    )
    default_driver = "psycopg2"
    copy_text = True
    truncates = True

    def born_by(
        self, column: sa.ColumnElement, cutoff: date, *, resident_id: bool
    ) -> sa.ColumnElement | None:
        if not resident_id:
            return column <= cutoff  # a DATE reads back as the same day (infinity as date.max)
        # [0-9] is ASCII in PostgreSQL's expressions; digits compare as text in the C collation
        return sa.and_(
            column.regexp_match("^[0-9]{17}[0-9Xx]$"),
            sa.func.substr(column, 7, 8).collate("C") <= cutoff.strftime("%Y%m%d"),
        )

    def user_schemas(self, inspector: sa.Inspector) -> list[str | None]:
        default = inspector.default_schema_name
        others = sorted(
            s
            for s in inspector.get_schema_names()
            if s not in _SYSTEM_SCHEMAS and not s.startswith("pg_") and s != default
        )
        return [None, *others]

    def partitions(self, conn: Connection) -> tuple[dict[TableIdent, TableIdent], set[TableIdent]]:
        return _partitions(conn)

    def estimated_rows(self, engine: Engine) -> int | None:
        with engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'"
                ).scalar_one()
            )

    def text_blocks(
        self, engine: Engine, table: sa.TableClause, columns: list[str], *, block_chars: int, batch: int
    ) -> Iterator[str]:
        return _copy_blocks(engine, table, columns, block_chars)

    def referrers(self, conn: Connection) -> dict[TableIdent, set[TableIdent]]:
        return _referrers(conn)

    def truncate(
        self,
        conn: Connection,
        tables: list[TableIdent],
        before: Callable[[dict[TableIdent, int]], None] | None = None,
    ) -> dict[TableIdent, int]:
        names = ", ".join(quote_table(conn, t) for t in tables)
        conn.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        counts = {
            t: int(conn.exec_driver_sql(f"SELECT count(*) FROM {quote_table(conn, t)}").scalar_one())
            for t in tables
        }
        if before is not None:
            before(counts)  # under the lock: no row can arrive between this check and the TRUNCATE
        conn.exec_driver_sql(f"TRUNCATE TABLE {names}")
        return counts

    def batch_update(
        self,
        conn: Connection,
        table: sa.Table,
        update: sa.Update,
        bind_keys: dict[str, str],
        bind_cols: dict[str, str],
        params: list[dict],
    ) -> None:
        if conn.dialect.driver == "psycopg2":
            _copy_update(conn, table, bind_keys, bind_cols, params)
        else:
            conn.execute(_values_update(table, bind_keys, bind_cols, params))

    def purge(self, engine: Engine, tables: list[str | TableIdent], notes: list[str]) -> str:
        return _purge(engine, tables, notes)

    def check_dead_rows(self, conn: Connection, tables: list[TableIdent], findings: Findings) -> None:
        if tables:
            _dead_tuples(conn, tables, findings)

    def lock_store_migrations(self, conn: Connection, key: int) -> None:
        # an advisory lock, released when the transaction ends
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def lock_name(self, conn: Connection, name: str) -> None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name})

    def lock_ledger_head(self, conn: Connection, query: sa.Select) -> sa.Select:
        # serialise writers, including the very first one (when there is no head row to lock yet)
        conn.exec_driver_sql("LOCK TABLE ledger_head IN SHARE ROW EXCLUSIVE MODE")
        return query


DIALECT = PostgreSQL()


#: a text cell longer than this (bytes) is not read through COPY, whose client receives a row
#: whole (libpq's buffer, then psycopg2's bytes: about three times the cell), but in slices
HUGE_CELL_BYTES = 4 << 20
#: bytes per slice of a huge cell (`substring(bytes from x for n)` on the server)
HUGE_CELL_SLICE = 4 << 20
_TEXT_TYPES = "'text'::regtype, 'varchar'::regtype, 'bpchar'::regtype"


def _copy_blocks(engine: Engine, clause: sa.TableClause, cols: list[str], block_chars: int) -> Iterator[str]:
    """The columns as COPY text, in blocks of whole lines (escaped tabs/newlines inside values
    are blanked to two spaces so offsets and word boundaries stay right). A line longer than
    `block_chars` is cut across blocks. A text cell over HUGE_CELL_BYTES is left out of the COPY
    and comes after it, on a line of its own (the same field position, the other fields empty),
    read in slices: memory stays bounded in cell size."""
    import codecs

    preparer = engine.dialect.identifier_preparer
    # the names as PostgreSQL reads them (the preparer doubles a % for psycopg2's parameters;
    # COPY and the queries without parameters take them as they are)
    plain = (lambda name: name.replace("%%", "%")) if preparer._double_percents else (lambda name: name)
    table = plain(preparer.format_table(clause))
    quoted = [plain(preparer.quote(c)) for c in cols]
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    raw = engine.raw_connection()
    try:
        huge_columns, huge_cells = _huge_cells(raw.driver_connection, table, cols, quoted)
        select = ", ".join(
            f"CASE WHEN octet_length({q}) > {HUGE_CELL_BYTES} THEN NULL ELSE {q} END"
            if i in huge_columns
            else q
            for i, q in enumerate(quoted)
        )
        pending = b""
        with raw.driver_connection.cursor() as cur:
            # a scan of a large table beside another one would start where that one is reading
            # (synchronized sequential scans), and the first examples found would change from run
            # to run; in the COPY's own transaction only
            cur.execute("SET LOCAL synchronize_seqscans = off")
        reader = _CopyReader(
            raw.driver_connection, f"COPY (SELECT {select} FROM {table}) TO STDOUT", block_chars
        )
        for chunk in reader:
            data = pending + chunk if pending else chunk
            chunk = pending = b""
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) < block_chars:
                    pending = data
                    continue
                cut = _escape_safe_cut(data)
            pending = data[cut + 1 :]
            piece = data[: cut + 1]
            data = b""
            yield _unescape(decoder.decode(piece), piece)
            piece = b""
        tail = decoder.decode(pending, final=True)
        if tail:
            yield _unescape(tail, pending)
        for ctid, index in huge_cells:
            yield "\t" * index
            yield from _cell_slices(raw.driver_connection, table, quoted[index], ctid)
            yield "\t" * (len(cols) - 1 - index) + "\n"
    finally:
        raw.close()


def _huge_cells(connection, table: str, cols: list[str], quoted: list[str]) -> tuple[set[int], list]:
    """(indexes of the text columns that may hold a huge cell, [(ctid, column index)] of each cell
    over HUGE_CELL_BYTES). Only a table with a TOAST relation that is not empty can hold one: the
    others cost one catalog query, no scan."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT COALESCE(pg_relation_size(NULLIF(reltoastrelid, 0)), 0) FROM pg_class WHERE oid = %s::regclass",
            (table,),
        )
        row = cur.fetchone()
        if not row or not row[0]:
            return set(), []
        cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            f"AND NOT attisdropped AND atttypid IN ({_TEXT_TYPES})",
            (table,),
        )
        text = {name for (name,) in cur.fetchall()}
        columns = {i for i, c in enumerate(cols) if c in text}
        if not columns:
            return set(), []
        over = [f"octet_length({quoted[i]}) > {HUGE_CELL_BYTES}" for i in sorted(columns)]
        cur.execute(f"SELECT ctid::text, {', '.join(over)} FROM {table} WHERE {' OR '.join(over)}")
        cells = [
            (ctid, i)
            for ctid, *flags in cur.fetchall()
            for i, flag in zip(sorted(columns), flags, strict=True)
            if flag
        ]
    connection.rollback()  # end the read-only transaction the catalog queries opened
    return columns, cells


def _cell_slices(connection, table: str, column: str, ctid: str) -> Iterator[str]:
    """One cell in slices of HUGE_CELL_SLICE bytes, decoded, tabs and line breaks blanked. The
    server converts the cell to bytes once (a compressed value would otherwise be decompressed
    from its start for every slice) and sends the slices as rows of a server-side cursor."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # names go into a statement with parameters: a % in them is psycopg2's, doubled
    shown = table
    column, table = column.replace("%", "%%"), table.replace("%", "%%")
    sql = (
        f"WITH v AS MATERIALIZED (SELECT convert_to({column}, 'UTF8') AS b FROM {table} WHERE ctid = %s::tid) "
        "SELECT g, substring(v.b from g for %s) FROM v CROSS JOIN LATERAL generate_series(1, octet_length(v.b), %s) g"
    )
    expected = 1
    with connection.cursor(name=f"dereg_cell_{id(decoder):x}") as cur:
        cur.itersize = 1  # one slice in memory at a time
        cur.execute(sql, (ctid, HUGE_CELL_SLICE, HUGE_CELL_SLICE))
        for at, piece in cur:
            if at != expected:  # the rows are the slices in order, or the cell would be garbled
                raise RuntimeError(f"{shown}: slices of a huge cell came out of order; scan again")
            expected += HUGE_CELL_SLICE
            text = decoder.decode(bytes(piece))
            piece = None
            yield text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def _escape_safe_cut(data: bytes) -> int:
    """The index of the last byte of a piece cut from inside one long line: never between a
    backslash and the character it escapes (the decoder keeps a cut UTF-8 character whole)."""
    cut = len(data) - 1
    backslashes = len(data) - len(data.rstrip(b"\\"))
    return cut - 1 if backslashes % 2 else cut


#: a backslash that opens no NULL (\N)
_NOT_NULL_ESCAPE = re.compile(rb"\\(?!N)")


def _unescape(block: str, raw: bytes | None = None) -> str:
    """COPY text's escapes of backslash, tab and line ends blanked to two spaces. `raw`: the bytes
    `block` was decoded from, if at hand (the same backslashes, each before the same character:
    a decoder never joins an ASCII byte to another)."""
    # most blocks hold no escape but NULLs (\N): when every backslash opens one, the four
    # replaces (a search of the whole block each, slowed by every backslash) would change nothing
    if raw is not None:
        if _NOT_NULL_ESCAPE.search(raw) is None:  # one search of the bytes, no count of the text
            return block
    else:
        backslashes = block.count("\\")
        if not backslashes or backslashes == block.count("\\N"):
            return block
    return block.replace("\\\\", "  ").replace("\\t", "  ").replace("\\n", "  ").replace("\\r", "  ")


class _CopyReader:
    """Iterate over a COPY TO STDOUT in chunks with psycopg2, without holding the table in memory."""

    def __init__(self, connection, sql: str, block_chars: int) -> None:
        self.connection, self.sql, self.block_chars = connection, sql, block_chars

    def __iter__(self) -> Iterator[bytes]:
        import queue
        import threading

        chunks: queue.Queue = queue.Queue(maxsize=8)
        failure: list[BaseException] = []

        class _Handover(io.RawIOBase):
            # psycopg2 writes one row at a time: io.BufferedWriter gathers the rows (in C, where a
            # Python write per row cost more than the copy) and hands over ~1 MiB at once here,
            # not one row per queue round trip (the lock traffic cost more than reading the rows)
            handing_over = True  # not once the copy is over

            def writable(self) -> bool:
                return True

            def write(self, data) -> int:
                view = memoryview(data)  # the writer's own buffer: copied before it is reused
                if self.handing_over:
                    for at in range(0, len(view), 1 << 20):  # one huge row in pieces, never whole
                        chunks.put(bytes(view[at : at + (1 << 20)]))
                return len(view)

        def pump() -> None:
            handover = _Handover()
            try:
                sink = io.BufferedWriter(handover, buffer_size=1 << 20)
                with self.connection.cursor() as cur:
                    cur.copy_expert(self.sql, sink, size=1 << 20)
                sink.flush()
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                failure.append(exc)
            finally:
                # a failed copy's rows left in the writer are not handed over when it is collected
                handover.handing_over = False
                chunks.put(None)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        buffered: list[bytes] = []
        size = 0
        while (chunk := chunks.get()) is not None:
            buffered.append(chunk)
            size += len(chunk)
            if size >= self.block_chars:
                yield b"".join(buffered)
                buffered, size = [], 0
        thread.join()
        if failure:
            raise failure[0]
        if buffered:
            yield b"".join(buffered)


def _values_update(table: sa.Table, bind_keys: dict, bind_cols: dict, params: list[dict]):
    """One UPDATE ... FROM (VALUES ...) for the whole batch instead of one statement
    per row (executemany over psycopg2 is a round trip per row)."""
    names = [*bind_keys.values(), *bind_cols.values()]
    v = sa.values(*[sa.column(n) for n in names], name="batch").data(
        [tuple(p[n] for n in names) for p in params]
    )
    return (
        table.update()
        .where(sa.and_(*[table.c[k] == sa.cast(v.c[b], table.c[k].type) for k, b in bind_keys.items()]))
        .values({c: sa.cast(v.c[b], table.c[c].type) for c, b in bind_cols.items()})
    )


def _copy_text(value) -> str:
    """A value in COPY's text format: NULL as \\N, backslash, tab and line breaks escaped."""
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _copy_update(conn: Connection, table: sa.Table, bind_keys: dict, bind_cols: dict, params: list[dict]):
    """psycopg2: the batch's new values COPYed into a temporary table, then one UPDATE ... FROM it
    (SQLAlchemy compiling thousands of bind parameters per batch cost more than the update)."""
    quote = conn.dialect.identifier_preparer.quote
    compile_type = conn.dialect.type_compiler_instance.process
    names = [*bind_keys.values(), *bind_cols.values()]
    sets = ", ".join(f"{quote(c)} = v.{b}::{compile_type(table.c[c].type)}" for c, b in bind_cols.items())
    where = " AND ".join(
        f"t.{quote(k)} = v.{b}::{compile_type(table.c[k].type)}" for k, b in bind_keys.items()
    )
    target = conn.dialect.identifier_preparer.format_table(table)
    if len(bind_keys) == 1:
        # the batch is a key range (keyset paging): saying so lets the planner read that range by
        # the primary key index instead of joining the VALUES list against the whole table
        ((key, bind),) = bind_keys.items()
        keys = [p[bind] for p in params]
        where += f" AND t.{quote(key)} BETWEEN %(lo)s AND %(hi)s"
        bounds = {"lo": min(keys), "hi": max(keys)}
    else:
        bounds = {}
    # the batch goes in by COPY into a temporary table dropped at commit, then one UPDATE joins it
    # (rendering every row as SQL text cost more than the update itself)
    columns = [(b, table.c[k].type) for k, b in bind_keys.items()] + [
        (b, table.c[c].type) for c, b in bind_cols.items()
    ]
    sql = f"UPDATE {target} AS t SET {sets} FROM dereg_batch AS v WHERE {where}"
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(
            "CREATE TEMP TABLE dereg_batch ("
            + ", ".join(f"{n} {compile_type(t)}" for n, t in columns)
            + ") ON COMMIT DROP"
        )
        buffer = io.StringIO()
        for p in params:
            buffer.write("\t".join(_copy_text(p[n]) for n in names))
            buffer.write("\n")
        buffer.seek(0)
        cursor.copy_expert(f"COPY dereg_batch ({', '.join(names)}) FROM STDIN", buffer)
        cursor.execute(sql, bounds or None)
    finally:
        cursor.close()


def _partitions(conn: Connection) -> tuple[dict[TableIdent, TableIdent], set[TableIdent]]:
    """Declarative partitions (relispartition) and their parents; partitioned tables (relkind 'p')."""
    rows = conn.exec_driver_sql(
        "SELECT cn.nspname, c.relname, pn.nspname, p.relname FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace "
        "WHERE c.relispartition"
    ).all()
    parents = conn.exec_driver_sql(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'p'"
    ).all()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}, {(r[0], r[1]) for r in parents}


def _referrers(conn: Connection) -> dict[TableIdent, set[TableIdent]]:
    """Table -> the tables whose foreign keys point at it, in every schema; the default schema
    (`current_schema()`) as None, as plans name tables."""
    rows = conn.execute(
        sa.text(
            "SELECT cn.nspname AS child_schema, c.relname AS child, pn.nspname AS parent_schema, "
            "p.relname AS parent, current_schema() AS here FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace "
            "JOIN pg_class p ON p.oid = k.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace "
            "WHERE k.contype = 'f'"
        )
    )
    found: dict[TableIdent, set[TableIdent]] = {}
    for child_schema, child, parent_schema, parent, here in rows:
        key = (None if parent_schema == here else parent_schema, parent)
        found.setdefault(key, set()).add((None if child_schema == here else child_schema, child))
    return found


def _dead_tuples(conn: Connection, tables: list[TableIdent], result: Findings) -> None:
    """Dead tuples per touched table; exact with pgstattuple, else from (lagging) statistics."""
    exact = (
        conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pgstattuple'")).first() is not None
    )
    if exact:
        try:
            with conn.begin_nested():
                dead = {
                    shown_name(t): int(
                        conn.execute(
                            sa.text("SELECT dead_tuple_count FROM pgstattuple(CAST(:t AS regclass))"),
                            {"t": quote_table(conn, t)},
                        ).scalar_one()
                    )
                    for t in tables
                }
        except sa.exc.DBAPIError as exc:
            exact = False
            result.notes.append(
                f"pgstattuple refused ({type(exc.orig).__name__}; needs pg_stat_scan_tables); "
                "dead tuples read from statistics instead"
            )
    if exact:
        for t in map(shown_name, tables):
            result.tables[t]["dead_tuples"] = dead[t]
            if dead[t]:
                result.problems.append(
                    f"{t}: {dead[t]} dead tuples (deleted rows' bytes) still in the table's "
                    "pages; run the purge task again"
                )
        return
    conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
    stats = {
        shown_name((None if schema == here else schema, name)): dead
        for schema, name, dead, here in conn.execute(
            sa.text(
                "SELECT schemaname, relname, n_dead_tup, current_schema() FROM pg_stat_user_tables "
                "WHERE relname = ANY(:t)"
            ),
            {"t": sorted({table_ident(t)[1] for t in tables})},
        ).all()
    }
    lagging = []
    for t in map(shown_name, tables):
        result.tables[t]["dead_tuples_stats"] = stats.get(t)
        if stats.get(t):
            lagging.append(f"{t}: {stats[t]}")
    result.notes.append(
        "dead tuples read from pg_stat_user_tables, which can lag behind; install the "
        "pgstattuple extension for an exact check"
    )
    if lagging:
        result.notes.append("statistics still count dead tuples (may be stale): " + ", ".join(lagging))


def _purge(engine: Engine, tables: list[str | TableIdent], notes: list[str]) -> str:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses to run in a transaction
        for t in tables:
            # ANALYZE too: VACUUM FULL alone leaves n_dead_tup as the deletes reported it
            conn.exec_driver_sql(f"VACUUM (FULL, ANALYZE) {quote_table(conn, t)}")
        try:
            conn.exec_driver_sql("CHECKPOINT")
            checkpoint = "then CHECKPOINT"
        except sa.exc.DBAPIError as exc:
            checkpoint = "CHECKPOINT refused"
            notes.append(
                f"CHECKPOINT refused ({type(exc.orig).__name__}; needs superuser or pg_checkpoint): the "
                "old pages stay in the write-ahead log until the server's next checkpoint"
            )
    notes.append("old row images may remain in WAL archives and replicas; those follow their own retention")
    return f"VACUUM (FULL, ANALYZE) of each touched table (rewritten into new files), {checkpoint}"
