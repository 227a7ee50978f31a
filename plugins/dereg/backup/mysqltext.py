"""MariaDB/MySQL rows as `mysql-text` (format version 5): read and loaded by the server, in C.

The server itself writes each row as one line of `LOAD DATA`'s default text format (fields
separated by a tab, `\\N` for NULL, backslash, tab and newline escaped): one `CONCAT_WS` per row,
string and binary columns as their stored bytes (`CAST(... AS BINARY)`: no character-set
conversion, no collation mix), FLOAT widened to DOUBLE (its shortest text round-trips, the
server's own FLOAT text does not), TIMESTAMP in UTC. The rows come through the `mysqlclient` C
driver (MySQLdb) with every result converter off, so Python only joins the lines of a batch;
restore `--into` loads them back with `LOAD DATA LOCAL INFILE ... CHARACTER SET binary`.

Tables are read side by side on `JOBS` connections that share one point in time: `FLUSH TABLES
WITH READ LOCK` on the first, `START TRANSACTION WITH CONSISTENT SNAPSHOT` on each, `UNLOCK
TABLES`. An account without the RELOAD privilege (or a lock that cannot be had within
`LOCK_WAIT_SECONDS`) reads every table on one connection in one snapshot instead, and the manifest
says so (`mysql.snapshot`). Format: docs/backup-format.md.
"""

from __future__ import annotations

import hashlib
import os
import queue
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.backup.codec import restored_result, whole_lines
from dereg.dialects import dialect_for
from dereg.errors import BackupError

MYSQL_TEXT = "mysql-text"
#: rows per fetch from the unbuffered result
BATCH = 5000
#: connections reading tables at once (one snapshot)
JOBS = 2
#: a table smaller than this (information_schema DATA_LENGTH) goes into its connection's pack (format
#: version 6) instead of chunks of its own: one object for many small tables
PACK_BELOW = 4 * 1024 * 1024
#: small tables read in one query (several statements: one round trip instead of one each)
PACK_GROUP = 64
#: data (information_schema DATA_LENGTH) outside the largest table from which a second connection is used
PARALLEL_BYTES = 64 * 2**20
#: how long FLUSH TABLES WITH READ LOCK may wait for running statements before one connection is used
LOCK_WAIT_SECONDS = 5
#: plaintext per LOAD DATA statement on restore
LOAD_BYTES = 16 * 1024 * 1024
#: session settings the rows are written and loaded under
SETTINGS = {"time_zone": "+00:00", "character_set_results": "binary"}
#: how the rows are loaded: strict (a value the column refuses is an error), 0 kept in an
#: AUTO_INCREMENT column, zero dates allowed (no NO_ZERO_DATE), backslash escapes in literals
LOAD_SQL_MODE = "STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO"
# types whose text never holds a tab, a newline or a backslash: written as the server's text
_PLAIN_TYPES = frozenset(
    {
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
        "decimal",
        "numeric",
        "double",
        "real",
        "date",
        "datetime",
        "timestamp",
        "time",
        "year",
    }
)
# MySQLdb / MariaDB error numbers that mean the connection went away
_LOST = {1053, 1927, 2006, 2013, 2055}
_NULL = "X'5C4E'"  # \N; hex literals mean the same under every sql_mode (NO_BACKSLASH_ESCAPES)


def _backquote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def connect(
    url: sa.URL, *, database: bool = True, load: bool = False, multi: bool = False, session: bool = True
):
    """A MySQLdb connection to `url`'s server (and database): results as raw bytes (no converter at
    all), UTC, no character-set conversion of results (`session`: else the server's own time zone
    and utf8mb4 results, as for the schema); with `load`, allowed to send local files; with
    `multi`, several statements per query (`run_many`)."""
    import MySQLdb
    from MySQLdb.constants import CLIENT

    kwargs: dict[str, Any] = {
        "host": url.host or "localhost",
        "user": url.username or "",
        "password": url.password or "",
        "port": int(url.port or 3306),
        "charset": "utf8mb4",
        "use_unicode": False,
        "conv": {},
    }
    if database and url.database:
        kwargs["database"] = url.database
    query = dict(url.query or {})
    if query.get("unix_socket"):
        kwargs["unix_socket"] = str(query["unix_socket"])
    # TLS as a PyMySQL URL gives it (ssl_ca, ssl_cert, ssl_key)
    ssl = {k[4:]: str(query[k]) for k in ("ssl_ca", "ssl_cert", "ssl_key") if query.get(k)}
    if ssl:
        kwargs["ssl"] = ssl
    if load:
        kwargs["local_infile"] = True
    if multi:
        kwargs["client_flag"] = CLIENT.MULTI_STATEMENTS
    conn = MySQLdb.connect(**kwargs)
    if not session:
        return conn
    cur = conn.cursor()
    cur.execute("SET SESSION time_zone = '+00:00', character_set_results = 'binary'")
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    cur.close()
    return conn


def reads_natively(url: str | sa.URL) -> bool:
    """Whether `url` is a MariaDB/MySQL database this module can reach (the mysqlclient driver is
    installed)."""
    import importlib.util

    return (
        sa.make_url(url).get_backend_name() in ("mysql", "mariadb")
        and importlib.util.find_spec("MySQLdb") is not None
    )


def existing_tables(url: str | sa.URL) -> set[str]:
    """The names of the tables and views of `url`'s database."""
    import MySQLdb

    try:
        conn = connect(sa.make_url(url), session=False)
        try:
            cur = conn.cursor()
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
            return {_text(name) for (name,) in cur.fetchall()}
        finally:
            conn.close()
    except MySQLdb.Error as exc:
        raise BackupError(f"the target database cannot be used ({type(exc).__name__})") from None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


#: statements per query of `run_many` (a query must fit in max_allowed_packet)
MANY = 200


def run_many(conn, statements: list[str]) -> list[list[tuple]]:
    """Each statement's rows (text, None for NULL), in a few round trips: `conn` is a `multi`
    connection, the statements are sent `MANY` at a time. The first that fails raises."""
    found: list[list[tuple]] = []
    cur = conn.cursor()
    try:
        for start in range(0, len(statements), MANY):
            cur.execute(";\n".join(statements[start : start + MANY]))
            while True:
                found.append([tuple(None if v is None else _text(v) for v in row) for row in cur.fetchall()])
                if cur.nextset() is None:
                    break
    finally:
        cur.close()
    return found


_KINDS = {
    **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "integer", "bigint"), "int"),
    **dict.fromkeys(("decimal", "numeric"), "decimal"),
    **dict.fromkeys(("float", "double", "real"), "float"),
    "date": "date",
    **dict.fromkeys(("datetime", "timestamp"), "datetime"),
    **dict.fromkeys(("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"), "str"),
    **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"), "bytes"),
}


@dataclass
class Table:
    """A base table as information_schema describes it: what the backup needs, without
    SQLAlchemy's reflection (a query per table)."""

    name: str
    #: manifest `columns` of its stored columns (name, kind, type, nullable, primary_key, mysql_type)
    columns: list[dict[str, Any]] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    foreign_keys: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0
    schema: None = None  # the connection's database, as the other readers' default schema

    @property
    def stored(self) -> list[tuple[str, str]]:
        return [(c["name"], c["mysql_type"]) for c in self.columns]


def list_tables(engine: Engine, only: list[str] | None = None) -> list[Table]:
    """Every base table of `engine`'s database (or those in `only`), parents before children by
    their foreign keys, from three information_schema queries."""
    conn = connect(engine.url)
    try:
        cur = conn.cursor()
        cur.execute(
            "SELECT TABLE_NAME, COALESCE(DATA_LENGTH, 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'"
        )
        tables = {_text(n): Table(_text(n), size=int(s)) for n, s in cur.fetchall()}
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COALESCE(GENERATION_EXPRESSION, '') "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, ORDINAL_POSITION"
        )
        for t, n, d, full, nullable, generated in cur.fetchall():
            table = tables.get(_text(t))
            if table is None or _text(generated):
                continue
            data_type = _text(d).lower()
            table.columns.append(
                {
                    "name": _text(n),
                    "kind": _KINDS.get(data_type, "other"),
                    "type": _text(full),
                    "nullable": _text(nullable) == "YES",
                    "primary_key": False,
                    "mysql_type": data_type,
                }
            )
        cur.execute(
            "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME "
            "FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() "
            "AND (CONSTRAINT_NAME = 'PRIMARY' OR REFERENCED_TABLE_SCHEMA = DATABASE()) "
            "ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION"
        )
        keys: dict[tuple[str, str], dict[str, Any]] = {}
        for t, constraint, column, ref_table, ref_column in cur.fetchall():
            table = tables.get(_text(t))
            if table is None:
                continue
            if _text(constraint) == "PRIMARY":
                table.primary_key.append(_text(column))
                continue
            fk = keys.setdefault((table.name, _text(constraint)), {"columns": [], "ref_columns": []})
            if not fk["columns"]:
                fk["ref_table"] = _text(ref_table)
                table.foreign_keys.append(fk)
            fk["columns"].append(_text(column))
            fk["ref_columns"].append(_text(ref_column))
        cur.close()
    finally:
        conn.close()
    for table in tables.values():
        for c in table.columns:
            c["primary_key"] = c["name"] in table.primary_key
        for fk in table.foreign_keys:  # the manifest's key order
            fk["columns"], fk["ref_table"], fk["ref_columns"] = (
                fk.pop("columns"),
                fk.pop("ref_table"),
                fk.pop("ref_columns"),
            )
    if only is not None:
        missing = sorted(set(only) - set(tables))
        if missing:
            raise BackupError(f"tables {missing} do not exist in the source")
        tables = {n: t for n, t in tables.items() if n in only}
    return _parents_first(tables)


def _parents_first(tables: dict[str, Table]) -> list[Table]:
    """Tables in name order, each after the tables its foreign keys refer to (a cycle: name order)."""
    import graphlib

    sorter = graphlib.TopologicalSorter()
    for name in sorted(tables):
        sorter.add(
            name, *sorted({fk["ref_table"] for fk in tables[name].foreign_keys} & set(tables) - {name})
        )
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError:
        order = sorted(tables)
    return [tables[n] for n in order]


def columns_of(cur, table: str) -> list[tuple[str, str]]:
    """(name, data type) of `table`'s stored columns in order; generated columns are left out."""
    cur.execute(
        "SELECT COLUMN_NAME, DATA_TYPE, COALESCE(GENERATION_EXPRESSION, '') FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (table,),
    )
    return [(_text(n), _text(t).lower()) for n, t, g in cur.fetchall() if not _text(g)]


def _field(name: str, data_type: str) -> str:
    quoted = _backquote(name)
    if data_type == "float":
        return f"IFNULL(CAST({quoted} AS DOUBLE), {_NULL})"
    if data_type in _PLAIN_TYPES:
        return f"IFNULL({quoted}, {_NULL})"
    escaped = (
        f"REPLACE(REPLACE(REPLACE(CAST({quoted} AS BINARY), X'5C', X'5C5C'), X'09', X'5C74'), X'0A', X'5C6E')"
    )
    return f"IFNULL({escaped}, {_NULL})"


def select_sql(table: str, columns: list[tuple[str, str]], order: list[str]) -> str:
    """The statement that reads `table` as `mysql-text` lines (without their newline), in `order`."""
    fields = ", ".join(_field(n, t) for n, t in columns) or "''"
    keys = ", ".join(_backquote(c) for c in order) or "1"
    return f"SELECT CONCAT_WS(X'09', {fields}) FROM {_backquote(table)} ORDER BY {keys}"


def _read_error(table: str, exc: BaseException) -> BackupError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in _LOST:
        what = f"the connection to the source was lost while reading table {table} (error {code})"
    else:
        what = f"reading table {table} failed ({type(exc).__name__}" + (f" {code})" if code else ")")
    return BackupError(
        f"{what}; the driver's message is withheld because it may quote a stored value. "
        "The backup is marked failed; check the source server and re-run the task."
    )


def _batches(cursor, size: int) -> Iterator[tuple]:
    while True:
        batch = cursor.fetchmany(size)
        if not batch:
            return
        yield batch


def copy_out(conn, table: str, sql: str, write: Callable[[bytes], Any]) -> int:
    """Run `sql` (from `select_sql`) on `conn` through an unbuffered cursor and write its lines, a
    batch per call; returns the row count."""
    return copy_out_many(conn, [(table, sql, write)])[0]


def copy_out_many(conn, items: list[tuple[str, str, Callable[[bytes], Any]]]) -> list[int]:
    """`copy_out` of several (table, sql, write) in one query (`conn` a `multi` connection when
    there are several): one round trip for many small tables; returns each one's row count."""
    import MySQLdb
    import MySQLdb.cursors

    cur = conn.cursor(MySQLdb.cursors.SSCursor)
    counts = []
    first = itemgetter(0)
    table = items[0][0]
    try:
        cur.execute(";\n".join(sql for _table, sql, _write in items))
        for number, (table, _sql, write) in enumerate(items):
            if number and cur.nextset() is None:
                raise BackupError(
                    f"reading table {table} failed: the server sent no rows for it; re-run the task"
                )
            rows = 0
            for batch in _batches(cur, BATCH):
                lines = list(map(first, batch))
                try:
                    write(b"\n".join(lines) + b"\n")
                except TypeError:  # CONCAT_WS gave NULL: the row is longer than max_allowed_packet
                    raise BackupError(
                        f"a row of table {table} is longer than the server's max_allowed_packet, so it cannot "
                        "be read as one line; raise max_allowed_packet (server and client) and re-run the task"
                    ) from None
                rows += len(batch)
            counts.append(rows)
    except MySQLdb.Error as exc:
        raise _read_error(table, exc) from None
    finally:
        try:
            cur.close()
        except MySQLdb.Error:
            pass
    return counts


class _Hasher:
    """Hashes what is written (and passes it on to `then`, when given)."""

    def __init__(self, then=None) -> None:
        self.digest = hashlib.sha256()
        self.then = then
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        if self.then is not None:
            self.then.write(data)
        return len(data)


def _order(table: Table) -> list[str]:
    return table.primary_key or [c["name"] for c in table.columns]


def open_snapshot(url: sa.URL, jobs: int) -> tuple[list, str]:
    """Up to `jobs` connections reading one consistent snapshot, and how it was had (for the
    manifest): FLUSH TABLES WITH READ LOCK around the snapshots' start, or one connection when the
    lock cannot be had (no RELOAD privilege, or running statements hold it off)."""
    import MySQLdb

    first = connect(url, multi=True)
    conns = [first]
    locked = False
    try:
        if jobs > 1:
            cur = first.cursor()
            try:
                cur.execute(f"SET SESSION lock_wait_timeout = {int(LOCK_WAIT_SECONDS)}")
                cur.execute("FLUSH TABLES WITH READ LOCK")
                locked = True
            except MySQLdb.Error as exc:
                why = exc.args[0] if exc.args else "?"
                note = (
                    f"one connection: FLUSH TABLES WITH READ LOCK was refused or timed out (error {why}; "
                    "it needs the RELOAD privilege), so the tables were read one after another in a single "
                    "consistent snapshot"
                )
        for _ in range(jobs - 1 if locked else 0):
            conns.append(connect(url, multi=True))
        for c in conns:
            c.cursor().execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        if locked:
            first.cursor().execute("UNLOCK TABLES")
            note = (
                f"{len(conns)} connections, each START TRANSACTION WITH CONSISTENT SNAPSHOT under one "
                "FLUSH TABLES WITH READ LOCK (every InnoDB table read as of one point in time)"
            )
        elif jobs <= 1:
            note = (
                "one connection, START TRANSACTION WITH CONSISTENT SNAPSHOT (the tables besides the largest "
                f"hold less than {PARALLEL_BYTES // 2**20} MiB: no second connection)"
            )
    except BaseException:
        for c in conns:
            c.close()
        raise
    return conns, note


def dump_tables(
    engine: Engine, tables: list[Table], session, *, current: list[str], progress=None
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every table of `tables` (`list_tables`, parents first) as `mysql-text` into the session's chunk
    streams, largest first, on up to `JOBS` connections sharing one snapshot. Returns the manifest's
    `tables` entries and its `mysql` field."""
    import MySQLdb

    sizes = sorted((t.size for t in tables), reverse=True)
    # a second connection pays (and FLUSH TABLES WITH READ LOCK, which waits for every running
    # statement of the server, is worth taking) only when the tables besides the largest are big
    jobs = JOBS if sum(sizes[1:]) >= PARALLEL_BYTES else 1
    try:
        conns, note = open_snapshot(engine.url, jobs)
    except MySQLdb.Error as exc:
        raise BackupError(
            f"the source cannot be read through the mysqlclient driver (error "
            f"{exc.args[0] if exc.args else '?'}); check the connection's host, port and credentials"
        ) from None
    if progress and jobs > 1 and len(conns) == 1:
        progress(f"WARNING: {note}")
    described: dict[str, dict[str, Any]] = {}
    try:
        todo: queue.SimpleQueue = queue.SimpleQueue()
        small: list[tuple[Table, str]] = []  # read PACK_GROUP at a time, in one query each
        for table in sorted(tables, key=lambda t: -t.size):
            sql = select_sql(table.name, table.stored, _order(table))
            if table.size >= PACK_BELOW:
                todo.put([(table, sql)])
            else:
                small.append((table, sql))
        # groups of at most PACK_GROUP, at least as many as there are connections
        step = max(1, min(PACK_GROUP, -(-len(small) // len(conns))))
        for start in range(0, len(small), step):
            todo.put(small[start : start + step])
        errors: list[BaseException] = []

        def work(conn) -> None:
            pack = None  # this connection's small tables, one after the other
            packed: list[tuple[dict[str, Any], int]] = []
            while not errors:
                try:
                    group = todo.get_nowait()
                except queue.Empty:
                    break
                try:
                    if group[0][0].size >= PACK_BELOW:  # a large table: chunks of its own
                        (table, sql), stream = group[0], session.stream(group[0][0].name)
                        rows = copy_out(conn, table.name, sql, stream.write)
                        stream.finish()
                        done = [(table, rows, stream.digest, stream.size, stream.chunks)]
                    else:
                        if pack is None:
                            pack = session.pack_stream(secrets.token_hex(6))
                        at, tees = pack.size, [_Hasher(pack) for _ in group]
                        counts = copy_out_many(
                            conn,
                            [(t.name, sql, tee.write) for (t, sql), tee in zip(group, tees, strict=True)],
                        )
                        done = [
                            (t, rows, tee.digest, tee.size, None)
                            for (t, _sql), tee, rows in zip(group, tees, counts, strict=True)
                        ]
                except BaseException as exc:  # noqa: BLE001 - raised by the caller below
                    current[0] = group[0][0].name + (
                        f" (or one of {len(group) - 1} more)" if len(group) > 1 else ""
                    )
                    errors.append(exc)
                    return
                for table, rows, digest, size, chunks in done:
                    described[table.name] = entry = {
                        "encoding": MYSQL_TEXT,
                        "name": table.name,
                        "rows": rows,
                        "sha256": digest.hexdigest(),
                        "bytes": size,
                        "chunks": chunks if chunks is not None else [],
                        "columns": table.columns,
                        "primary_key": table.primary_key,
                        "foreign_keys": table.foreign_keys,
                    }
                    if chunks is None:
                        packed.append((entry, at))
                        at += size
                    if progress:
                        where = f"pack {pack.name}" if chunks is None else f"{len(chunks)} chunk(s)"
                        progress(f"backup {table.name}: {rows} rows in {where}")
            if pack is not None and not errors:
                try:
                    pack.finish()
                except BaseException as exc:  # noqa: BLE001 - raised by the caller below
                    current[0] = f"(pack {pack.name})"
                    errors.append(exc)
                    return
                from dereg.backup.writer import place_in_pack

                for entry, start in packed:
                    place_in_pack(entry, pack, start)

        threads = [threading.Thread(target=work, args=(c,), name="dereg-mysql") for c in conns[1:]]
        for t in threads:
            t.start()
        try:
            work(conns[0])
        finally:
            for t in threads:
                t.join()
        if errors:
            raise errors[0]
    finally:
        for c in conns:
            try:
                c.rollback()
                c.close()
            except MySQLdb.Error:
                pass
    ordered = {t.name: described[t.name] for t in tables}
    return ordered, {"mysql": {"snapshot": note, "settings": dict(SETTINGS)}}


def table_digests(
    engine: Engine, tables: list[tuple[str | None, str]]
) -> dict[tuple[str | None, str], tuple[int, str]]:
    """(rows, SHA-256) of each table as a `mysql-text` backup taken now would record them, in one
    snapshot (erase's check against the backup)."""
    described = {t.name: t for t in list_tables(engine, [name for _schema, name in tables])}
    conn = connect(engine.url)
    found = {}
    try:
        conn.cursor().execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        for schema, name in tables:
            table = described[name]
            hasher = _Hasher()
            rows = copy_out(conn, name, select_sql(name, table.stored, _order(table)), hasher.write)
            found[(schema, name)] = (rows, hasher.digest.hexdigest())
    finally:
        conn.rollback()
        conn.close()
    return found


# --- restore ----------------------------------------------------------------------------------
def _load_error(name: str, spec: dict, index: int, exc: BaseException) -> str:
    code = exc.args[0] if exc.args else "?"
    key = spec["chunks"][index] if 0 <= index < len(spec["chunks"]) else "?"
    return (
        f"{name}: rows up to chunk {index} ({key}) cannot be loaded into the target "
        f"({type(exc).__name__} {code}; LOAD DATA LOCAL INFILE needs local_infile=ON on the server)"
    )


def _load_one(conn, path: str, name: str, spec: dict, pieces: Iterator[bytes], problems: list[str]) -> dict:
    """Load one table's plaintext by LOAD DATA LOCAL INFILE of up to LOAD_BYTES at a time (cut
    after a line end, written to the private file `path`), then read it back by the backup's own
    reader and hash it."""
    import MySQLdb

    table = spec.get("name") or name
    stored = [(c["name"], c.get("mysql_type", "")) for c in spec["columns"]]
    load = (
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {_backquote(table)} CHARACTER SET binary "
        f"({', '.join(_backquote(n) for n, _t in stored)})"
    )
    cur = conn.cursor()
    index = -1
    try:
        out = open(path, "wb")  # noqa: SIM115 - reopened after each load
        size = 0
        try:
            for index, piece in enumerate(pieces):  # noqa: B007 - named in the problem below
                cut = piece.rfind(b"\n") + 1 if size + len(piece) >= LOAD_BYTES else 0
                if cut:  # whole lines up to here go now, the rest starts the next file
                    out.write(piece[:cut])
                    out.close()
                    cur.execute(load)
                    out = open(path, "wb")  # noqa: SIM115
                    out.write(piece[cut:])
                    size = len(piece) - cut
                else:
                    out.write(piece)
                    size += len(piece)
            out.close()
            if size:
                cur.execute(load)
        finally:
            out.close()
        conn.commit()
    except MySQLdb.Error as exc:
        conn.rollback()
        problems.append(_load_error(name, spec, index, exc))
    hasher = _Hasher()
    order = spec.get("primary_key") or [n for n, _t in stored]
    try:
        conn.cursor().execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        count = copy_out(conn, table, select_sql(table, stored, order), hasher.write)
    except (BackupError, MySQLdb.Error) as exc:
        problems.append(f"{name}: the restored rows cannot be read back ({str(exc).split(';')[0][:200]})")
        count = -1
    finally:
        conn.rollback()
    return restored_result(name, spec, count, hasher.digest.hexdigest(), problems)


class _Loaders:
    """Connections loading `mysql-text` tables at once on restore: each thread takes units from one
    queue, loads and reads back a table (`_load_one`) and records its verdict; the first error stops
    the others and is raised when all have ended. A scratch folder holds each connection's file for
    LOAD DATA LOCAL INFILE."""

    def __init__(self, url, specs, chunks_of, problems: list[str], progress) -> None:
        self.url = sa.make_url(url)
        self.specs = specs
        self.chunks_of = chunks_of
        self.problems = problems
        self.progress = progress
        self.todo: queue.SimpleQueue = queue.SimpleQueue()
        self.results: dict[str, dict[str, Any]] = {}
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.folder = ""

    def connect(self):
        """A load connection, or None with the error recorded."""
        try:
            return connect(self.url, load=True)
        except Exception as exc:  # noqa: BLE001 - raised by run() below
            code = exc.args[0] if exc.args else "?"
            self.errors.append(
                BackupError(
                    f"the target database cannot be reached through the mysqlclient driver ({type(exc).__name__} "
                    f"{code}); check its host, port and credentials. Nothing was restored."
                )
            )
            return None

    def path(self, number: int) -> str:
        return os.path.join(self.folder, f"rows-{number}.txt")

    def load(self, conn, number: int, name: str) -> None:
        found: list[str] = []
        spec = self.specs[name]
        result = _load_one(conn, self.path(number), name, spec, self.chunks_of(name, spec), found)
        with self.lock:
            self.results[name] = result
            self.problems.extend(found)
        if self.progress:
            self.progress(
                f"restore {name}: {result['restored_rows']}/{result['expected_rows']} rows, "
                f"{'ok' if result['ok'] else 'MISMATCH'}"
            )

    def run(self, work: Callable[[int], None], jobs: int, thread_name: str, names: list[str]):
        """`work(0)` here and `work(1..jobs-1)` in threads; the verdicts of `names`, in their order."""
        self.folder = tempfile.mkdtemp(prefix="dereg-load-")
        try:
            threads = [threading.Thread(target=work, args=(n,), name=thread_name) for n in range(1, jobs)]
            for t in threads:
                t.start()
            try:
                work(0)
            finally:
                for t in threads:
                    t.join()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
        if self.errors:
            raise self.errors[0]
        return {n: self.results[n] for n in names if n in self.results}


def load_tables(
    url: str | sa.URL,
    specs: dict[str, dict],
    names: list[str],
    chunks_of: Callable[[str, dict], Iterator[bytes]],
    problems: list[str],
    progress=None,
) -> dict[str, dict[str, Any]]:
    """Load `names` (`mysql-text` tables of the manifest `specs`) into the empty tables the schema
    created, largest first, on up to `JOBS` connections at once; each is read back and hashed as
    soon as it is loaded. Returns each table's verdict (restored_result)."""
    pool = _Loaders(url, specs, chunks_of, problems, progress)
    for name in sorted(names, key=lambda n: -(specs[n].get("bytes") or 0)):
        pool.todo.put(name)

    def work(number: int) -> None:
        conn = pool.connect()
        if conn is None:
            return
        try:
            conn.cursor().execute(
                f"SET SESSION sql_mode = '{LOAD_SQL_MODE}', FOREIGN_KEY_CHECKS = 0, UNIQUE_CHECKS = 0"
            )
            while not pool.errors:
                try:
                    name = pool.todo.get_nowait()
                except queue.Empty:
                    return
                pool.load(conn, number, name)
        except BaseException as exc:  # noqa: BLE001 - raised by pool.run
            pool.errors.append(exc)
        finally:
            conn.close()

    return pool.run(work, min(JOBS, len(names)), "dereg-mysql-load", names)


#: connections creating and loading tables at once on restore `--into` (each CREATE TABLE waits
#: for the server's log flush: several connections share the flushes)
RESTORE_JOBS = 6


def create_and_load(
    url: str | sa.URL,
    pre: list[dict[str, str]],
    specs: dict[str, dict],
    names: list[str],
    chunks_of: Callable[[str, dict], Iterator[bytes]],
    problems: list[str],
    created: list[tuple[str, str]],
    progress=None,
) -> dict[str, dict[str, Any]]:
    """The pre-data statements of a `sql-statements` schema (its `sql_mode`, then one CREATE TABLE
    per table) and the `mysql-text` rows of `names`, on up to `RESTORE_JOBS` connections at once:
    each table created (under the source's sql_mode and the server's time zone, foreign key checks
    off, so in any order), then loaded and read back and hashed (`_load_one`) on the same
    connection; tables with the most rows first. Appends ("table", name) to `created` for each
    table made; a statement the target refuses raises a `BackupError` naming it. Returns each
    loaded table's verdict (restored_result)."""
    import MySQLdb

    mode = next((item["sql"] for item in pre if item["kind"] == "sql_mode"), None)
    by_table = {specs[n].get("name") or n: n for n in names}
    units = [(item, by_table.pop(item["name"], None)) for item in pre if item["kind"] == "table"]
    units += [(None, name) for name in by_table.values()]  # rows without a statement: the load says so
    units.sort(key=lambda u: -(specs[u[1]].get("bytes") or 0) if u[1] is not None else 1)
    pool = _Loaders(url, specs, chunks_of, problems, progress)
    for unit in units:
        pool.todo.put(unit)
    schema_settings = "SET SESSION time_zone = @@GLOBAL.time_zone" + (
        ", sql_mode = %s" if mode is not None else ""
    )

    def create(cur, item: dict) -> None:
        cur.execute(schema_settings, (mode,) if mode is not None else None)
        try:
            cur.execute(item["sql"])  # no parameters: a % in the statement is not a placeholder
        except MySQLdb.Error as exc:
            raise BackupError(
                f"schema section pre-data, table {item['name']!r} cannot be created in the target "
                f"({type(exc).__name__}). Nothing was restored."
            ) from None
        with pool.lock:
            created.append(("table", item["name"]))
        cur.execute(f"SET SESSION time_zone = '+00:00', sql_mode = '{LOAD_SQL_MODE}'")

    def work(number: int) -> None:
        conn = pool.connect()
        if conn is None:
            return
        try:
            cur = conn.cursor()
            cur.execute(
                f"SET SESSION sql_mode = '{LOAD_SQL_MODE}', FOREIGN_KEY_CHECKS = 0, UNIQUE_CHECKS = 0"
            )
            while not pool.errors:
                try:
                    item, name = pool.todo.get_nowait()
                except queue.Empty:
                    return
                if item is not None:
                    create(cur, item)
                if name is not None:
                    pool.load(conn, number, name)
        except BaseException as exc:  # noqa: BLE001 - raised by pool.run
            pool.errors.append(exc)
        finally:
            conn.close()

    return pool.run(work, min(RESTORE_JOBS, len(units)), "dereg-mysql-restore", names)


def statement_runner(conn, created: list[tuple[str, str]]) -> Callable[[str, dict[str, str]], None]:
    """`run(section, item)`: one `sql-statements` item on `conn` (a `session=False` connection: the
    server's time zone); a `sql_mode` item sets the session's. Appends (kind, name) to `created`
    for each object made; one the target refuses raises a `BackupError` naming it."""
    import MySQLdb

    cur = conn.cursor()

    def run(section: str, item: dict[str, str]) -> None:
        if item["kind"] == "sql_mode":
            cur.execute("SET SESSION sql_mode = %s", (item["sql"],))
            return
        try:
            cur.execute(item["sql"])  # no parameters: a % in a view's text is not a placeholder
        except MySQLdb.Error as exc:
            raise BackupError(
                f"schema section {section}, {item['kind']} {item['name']!r} cannot be created in the "
                f"target ({type(exc).__name__}). Nothing was restored."
            ) from None
        created.append((item["kind"], item["name"]))

    return run


def unescape(field: bytes) -> bytes | None:
    """One field of a `mysql-text` line as its bytes (None for `\\N`)."""
    if field == b"\\N":
        return None
    if b"\\" not in field:
        return field
    out = bytearray()
    i = 0
    n = len(field)
    while i < n:
        byte = field[i]
        if byte == 0x5C and i + 1 < n:
            nxt = field[i + 1 : i + 2]
            out += _ESCAPES.get(nxt, nxt)
            i += 2
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def escape(value: bytes | None) -> bytes:
    """The inverse of `unescape`, as the server writes a string field."""
    if value is None:
        return b"\\N"
    return value.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n")


# LOAD DATA's escapes (what a reader must accept; the server writes only \\, \t, \n and \N)
_ESCAPES = {b"0": b"\x00", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a"}


def restore_into_sqlite(scratch: Engine, name: str, spec: dict, pieces: Iterator[bytes], problems: list[str]):
    """A `mysql-text` table into scratch SQLite (the verification without a MariaDB/MySQL target):
    every field kept as its exact bytes (BLOB), read back in insertion order, written out again
    and hashed."""
    columns = [c["name"] for c in spec["columns"]]
    table = sa.Table(name, sa.MetaData(), *[sa.Column(c, sa.LargeBinary) for c in columns])
    table.create(scratch)
    insert = table.insert()
    for index, lines in whole_lines(pieces):
        try:
            rows = []
            for line in lines:
                fields = line.split(b"\t")
                if len(fields) != len(columns):
                    raise ValueError("field count")
                rows.append(dict(zip(columns, map(unescape, fields), strict=True)))
            if rows:
                with scratch.begin() as conn:
                    conn.execute(insert, rows)
        except (sa.exc.SQLAlchemyError, ValueError) as exc:
            problems.append(
                f"{name}: rows of chunk {index} ({spec['chunks'][index]}) cannot be loaded into the scratch "
                f"database ({type(getattr(exc, 'orig', None) or exc).__name__})"
            )
            break
    digest, count = hashlib.sha256(), 0
    with scratch.connect() as conn:
        for row in conn.execute(
            sa.select(*table.columns).order_by(sa.literal_column(dialect_for(scratch).insertion_order))
        ):
            digest.update(b"\t".join(escape(None if v is None else bytes(v)) for v in row) + b"\n")
            count += 1
    return restored_result(name, spec, count, digest.hexdigest(), problems)
