"""SQLite (sqlite3): one file, loose column types, rowid order, secure_delete and VACUUM.

The compliance store on SQLite takes its write lock up front (BEGIN IMMEDIATE), so ledger appends
serialise instead of deadlocking; a source file that does not exist is an error, not a new empty
database; backups read rows through sqlite3's own cursor (backup/rowfast.py); a scratch SQLite
database can take PostgreSQL's COPY rows field by field when no PostgreSQL server is at hand;
DELETEs zero the freed cells and purge rewrites the whole file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from dereg.dialects.base import Dialect, TableIdent, quote_table


class SQLite(Dialect):
    name = "sqlite"
    #: how the backup captures the schema: `backup/schema.py` STATEMENT_READERS
    schema_reader = "sqlite"
    #: one file, often in memory: scanned in one process
    parallel_scan = False
    sqlalchemy_names = frozenset({"sqlite"})
    connection_types = frozenset({"sqlite"})
    residual_risks = ("copies of the database file made outside Dereg (file backups, synced folders)",)
    loads_copy_text_rows = True
    insertion_order = "rowid"
    narrow_integers = False  # INTEGER always holds 8 bytes: a mobile number fits
    typeless_text = True  # every string column is TEXT, whatever it holds

    def delete_rules(self, conn: Connection, table: TableIdent) -> dict[tuple[str, ...], str]:
        # SQLAlchemy reads ON DELETE only from table constraints, not from a column's REFERENCES
        schema, name = table
        pragma = f"{quote_table(conn, schema)}.foreign_key_list" if schema else "foreign_key_list"
        rows = conn.exec_driver_sql(f"PRAGMA {pragma}({quote_table(conn, name)})").all()
        columns: dict[int, list[str]] = {}
        rules: dict[int, str] = {}
        for row in rows:  # (id, seq, table, from, to, on_update, on_delete, match)
            columns.setdefault(row[0], []).append(row[3])
            rules[row[0]] = row[6]
        return {tuple(cols): rules[i] for i, cols in columns.items()}

    def describe_location(self, url: URL) -> str:
        return url.database or ""

    def store_engine(self, url: URL) -> Engine:
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # Let SQLAlchemy, not pysqlite, issue BEGIN, so that BEGIN IMMEDIATE takes the write
            # lock up front and two tasks appending to the ledger serialise instead of deadlocking.
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA busy_timeout=60000")
            _use_wal(dbapi_conn)

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def missing_file(self, url: URL | str) -> str | None:
        database = sa.make_url(url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return None if Path(database).is_file() else database

    def has_fast_reader(self, engine: Engine) -> bool:
        return engine.dialect.driver == "pysqlite"

    def fast_cursor(self, driver_connection: Any) -> Any:
        return driver_connection.cursor()

    def secure_delete(self, conn: Connection) -> None:
        # zero the freed cells at DELETE time already, not only at the purge's VACUUM
        conn.exec_driver_sql("PRAGMA secure_delete=ON")

    def purge(self, engine: Engine, tables: list, notes: list[str]) -> str:
        return _purge(engine, notes)


DIALECT = SQLite()


def _purge(engine: Engine, notes: list[str]) -> str:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses to run in a transaction
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
        conn.exec_driver_sql("VACUUM")
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        if str(mode).lower() == "wal":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            notes.append("WAL checkpointed and truncated")
    return "PRAGMA secure_delete=ON; VACUUM (whole database file rewritten)"


def _use_wal(dbapi_conn, wait: float = 60.0) -> None:
    """Put the store file in WAL mode (it stays so). Switching needs the file to itself, and SQLite
    answers "database is locked" at once, without its busy handler, while another connection (a
    worker opening the same new store, a migration) writes: so wait and try again."""
    import sqlite3
    import time

    if str(dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
