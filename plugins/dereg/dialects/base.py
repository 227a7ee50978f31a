"""The dialect protocol: everything Dereg does differently from one database to the next.

`Dialect` states the verbs (connection setup, user schemas, sampling, streaming text blocks, the
fast row reader, deletes and truncation, batched updates, purge and what it cannot reach, dead-row
checks, ledger locking) with the generic SQLAlchemy behaviour as their default, so a database
Dereg has no module for still works as well as SQLAlchemy lets it. One module per database
(`postgresql.py`, `mysql.py`, `sqlite.py`) subclasses it and overrides what differs; the rest of
Dereg asks `dialect_for(engine)` and never the database's name. Checklist: docs/dialects.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from typing import Any, ClassVar, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

#: a table as statements address it: (schema, name), schema None for the connection's default schema
TableIdent = tuple[str | None, str]


def table_ident(table: str | TableIdent) -> TableIdent:
    """(schema, name) of `table`; a plain string is a table of the default schema."""
    return (None, table) if isinstance(table, str) else (table[0], table[1])


def quote_table(conn_or_engine: Connection | Engine, table: str | TableIdent) -> str:
    """`"schema"."name"` (or `"name"`) quoted for the connection's database."""
    schema, name = table_ident(table)
    quote = conn_or_engine.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def shown_name(table: str | TableIdent) -> str:
    """How plans and findings name the table: `schema.name`, or the bare name in the default schema."""
    schema, name = table_ident(table)
    return f"{schema}.{name}" if schema else name


class Findings(Protocol):
    """Where a dead-row check reports (erase/verify.py's `Verification`)."""

    tables: dict[str, dict[str, Any]]
    problems: list[str]
    notes: list[str]


class Dialect:
    """A database as Dereg sees it. The class attributes describe it; the methods default to
    plain SQLAlchemy, which every dialect module may override."""

    #: the name inventories and certificates record ("postgresql", "mysql", "sqlite")
    name: ClassVar[str] = "generic"
    #: SQLAlchemy's dialect names this module serves (`engine.dialect.name`, URL backend names)
    sqlalchemy_names: ClassVar[frozenset[str]] = frozenset()
    #: Airflow connection types of this database ("postgres"): how certificates name a store
    connection_types: ClassVar[frozenset[str]] = frozenset()
    #: copies of erased rows that outlive the erasure, outside Dereg's reach (certificates list them)
    residual_risks: ClassVar[tuple[str, ...]] = ("copies outside Dereg's reach",)
    #: the DBAPI driver Dereg installs and uses when a URL names none (`postgresql://...`)
    default_driver: ClassVar[str | None] = None
    #: the server reads and writes PostgreSQL's COPY text: backups take the COPY path
    #: (backup/pgcopy.py, encoding pg-copy-text) and such backups restore into it
    copy_text: ClassVar[bool] = False
    #: a scratch database that can hold pg-copy-text rows field by field (SQLite's loose types)
    loads_copy_text_rows: ClassVar[bool] = False
    #: a column that gives rows back in insertion order ("rowid"), immune to collations
    insertion_order: ClassVar[str | None] = None
    #: integer types are as wide as declared (SQLite's INTEGER always holds 8 bytes)
    narrow_integers: ClassVar[bool] = True
    #: whole-table deletes may go as one TRUNCATE (`referrers` and `truncate` are implemented)
    truncates: ClassVar[bool] = False
    #: a bare TEXT column type says nothing of its content (SQLite gives every string column that
    #: type): the classifier does not take it for free text (`classify.engine`)
    typeless_text: ClassVar[bool] = False

    # --- URLs and connections ---------------------------------------------------------------
    #: which reader of `backup/schema.py` (STATEMENT_READERS) captures this dialect's schema as
    #: statements; None: not by statements (PostgreSQL's schema comes from pg_dump, see pgcopy)
    schema_reader: str | None = None
    #: whether a full scan may read tables side by side in worker processes (`classify/parallel.py`)
    parallel_scan: bool = True

    def born_by(
        self, column: sa.ColumnElement, cutoff: date, *, resident_id: bool
    ) -> sa.ColumnElement | None:
        """A condition true only where `column` says its row's person was born on `cutoff` or
        earlier, as the classifier would read it: a DATE column (`resident_id` False) or the birth
        date inside an 18-character resident ID of ASCII digits (its last may be X; characters 7
        to 14, compared as text; the ID's check digit aside). False or NULL where that cannot be
        told on the server; None where the dialect cannot compare so (minors are then counted
        from the rows read back, `classify.engine`)."""
        return None

    def normalize_url(self, url: URL) -> URL:
        """`url` with the driver Dereg uses when it names none; otherwise unchanged."""
        if self.default_driver and "+" not in url.drivername:
            return url.set(drivername=f"{url.drivername}+{self.default_driver}")
        return url

    def describe_location(self, url: URL) -> str:
        """Where the database lives, for certificates: backend://host:port/database, no driver,
        login, password or options."""
        bare = sa.URL.create(url.get_backend_name(), host=url.host, port=url.port, database=url.database)
        return bare.render_as_string(hide_password=True)

    def store_engine(self, url: URL) -> Engine:
        """An engine for the compliance store (ledger, catalog) at `url`."""
        return sa.create_engine(url, pool_pre_ping=True)

    def missing_file(self, url: URL | str) -> str | None:
        """The path of a file database that does not exist yet (connecting would create it)."""
        return None

    # --- inventory and classification -------------------------------------------------------
    def user_schemas(self, inspector: sa.Inspector) -> list[str | None]:
        """The schemas to inventory when none is named; None stands for the default one."""
        return [None]

    def estimated_rows(self, engine: Engine) -> int | None:
        """The server's own estimate of the rows of all user tables, from its statistics (no table
        is read), or None when the dialect keeps none: a full scan of a source this large starts
        its worker processes before the inventory (`classify/parallel.py`, `start_early`)."""
        return None

    def column_name(self, reflected: str) -> str:
        """A column's real name from the name SQLAlchemy's inspector reports for it."""
        return reflected

    def partitions(self, conn: Connection) -> tuple[dict[TableIdent, TableIdent], set[TableIdent]]:
        """({partition: its parent table}, {partitioned parent tables}), each as (real schema name,
        table name), for a database with declarative partitioning; by default none."""
        return {}, set()

    def delete_rules(self, conn: Connection, table: TableIdent) -> dict[tuple[str, ...], str]:
        """{foreign key's columns: its ON DELETE rule} where SQLAlchemy's reflection misses the
        rule (it reports it in `options["ondelete"]` otherwise); by default nothing more."""
        return {}

    def random_order(self) -> sa.ColumnElement:
        """An ORDER BY term that shuffles rows (sampling a table without an integer key)."""
        return sa.func.random()

    def text_blocks(
        self, engine: Engine, table: sa.TableClause, columns: list[str], *, block_chars: int, batch: int
    ) -> Iterator[str]:
        """Every row of `columns` as tab-separated lines (tabs and line breaks inside values
        blanked), in blocks of about `block_chars` characters, through a server-side cursor.
        Blocks are read as one stream (`scanner.scan_stream`): a dialect may cut a long line
        across blocks to keep memory bounded in cell size."""
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch).execute(
                sa.select(*[table.c[c] for c in columns])
            )
            lines: list[str] = []
            size = 0
            for row in result:
                fields = []
                for value in row:
                    if value is None:
                        fields.append("")
                        continue
                    if isinstance(value, bytes | bytearray | memoryview):
                        value = bytes(value).decode("utf-8", errors="replace")
                    text = value if isinstance(value, str) else str(value)
                    fields.append(text.replace("\t", " ").replace("\n", " ").replace("\r", " "))
                line = "\t".join(fields)
                lines.append(line)
                size += len(line) + 1
                if size >= block_chars:
                    yield "\n".join(lines) + "\n"
                    lines, size = [], 0
            if lines:
                yield "\n".join(lines) + "\n"

    # --- backup -----------------------------------------------------------------------------
    def has_fast_reader(self, engine: Engine) -> bool:
        """Whether `fast_cursor` gives a raw cursor for backup/rowfast.py with this engine's driver."""
        return False

    def fast_cursor(self, driver_connection: Any) -> Any:
        """A raw DBAPI cursor that fetches in batches without holding the whole result."""
        raise NotImplementedError(f"no fast row reader for {self.name}")

    #: which native row path of `backup/archive.py` (NATIVE_ROWS) reads and restores every table
    #: of this database in its own encoding (MariaDB/MySQL: "mysql-text"); None: json-rows
    native_rows: str | None = None

    def has_native_rows(self, engine: Engine) -> bool:
        """Whether `native_rows` can be used here (its driver is installed)."""
        return False

    # --- erasure ----------------------------------------------------------------------------
    def secure_delete(self, conn: Connection) -> None:
        """Make the DELETEs of this transaction overwrite the freed bytes, where the database can."""

    def referrers(self, conn: Connection) -> dict[TableIdent, set[TableIdent]]:
        """Table -> the tables whose foreign keys point at it, every schema, each as (schema,
        name) with None for the default schema; with `truncates`."""
        raise NotImplementedError(f"no TRUNCATE path for {self.name}")

    def truncate(
        self,
        conn: Connection,
        tables: list[TableIdent],
        before: Callable[[dict[TableIdent, int]], None] | None = None,
    ) -> dict[TableIdent, int]:
        """Lock `tables`, count their rows, call `before(counts)` (raising there leaves every table
        as it was) and empty them in one statement (inside `conn`'s transaction); returns the rows
        per table. Only with `truncates`."""
        raise NotImplementedError(f"no TRUNCATE path for {self.name}")

    def batch_update(
        self,
        conn: Connection,
        table: sa.Table,
        update: sa.Update,
        bind_keys: dict[str, str],
        bind_cols: dict[str, str],
        params: list[dict],
    ) -> None:
        """Apply one batch of pseudonymization: `update` (bound by `bind_keys`/`bind_cols`) per row."""
        conn.execute(update, params)

    def purge(self, engine: Engine, tables: list[str | TableIdent], notes: list[str]) -> str:
        """Make the deleted rows of `tables` ((schema, name), or a default-schema name) leave the database files; returns the method used and
        adds to `notes` what it cannot reach (logs, replicas, shared tablespaces)."""
        notes.append(
            f"no purge known for dialect {engine.dialect.name}: deleted rows may remain in the database files"
        )
        return "none"

    def check_dead_rows(self, conn: Connection, tables: list[TableIdent], findings: Findings) -> None:
        """After purge: report into `findings` (keyed by `shown_name`) deleted rows' bytes still in
        `tables`, where the database can tell."""

    # --- the ledger -------------------------------------------------------------------------
    def lock_store_migrations(self, conn: Connection, key: int) -> None:
        """Serialise compliance-store migrations inside `conn`'s transaction (until it ends).
        By default nothing: SQLite's store transactions begin IMMEDIATE, which already excludes
        any other writer."""

    def lock_name(self, conn: Connection, name: str) -> None:
        """Serialise the compliance-store transactions that take the lock `name` (inside `conn`'s
        transaction, held until `unlock_name` after it ends). By default nothing: SQLite's store
        transactions begin IMMEDIATE, which already excludes any other writer."""

    def unlock_name(self, conn: Connection, name: str) -> None:
        """Release what `lock_name` took once `conn`'s transaction has ended (a lock that outlives
        its transaction: MySQL's). Never raises: a connection lost meanwhile took its locks along."""

    def lock_ledger_head(self, conn: Connection, query: sa.Select) -> sa.Select:
        """Serialise ledger writers inside `conn`'s transaction, also the very first one (no head
        row yet); returns the query that reads the head row."""
        return query


GENERIC = Dialect()
