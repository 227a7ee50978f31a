"""Inventory of a SQL source by SQLAlchemy reflection.

Tables, columns (type as text, nullability, primary key, maximum length), primary and foreign
keys and exact row counts. Nothing but names and counts leaves this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import sqlalchemy as sa

from dereg.dialects import dialect_for, recorded_name, type_text
from dereg.errors import SourceError
from dereg.model import ColumnInfo, ForeignKey, SourceInventory, TableInfo, qualified
from dereg.redact import redact

log = logging.getLogger(__name__)


def _where(engine: sa.Engine) -> str:
    url = engine.url
    if url.host:
        return f"host {url.host}" + (f":{url.port}" if url.port else "")
    return f"file {url.database}" if url.database else "an in-memory database"


def _schemas(engine: sa.Engine, inspector, schema: str | None) -> list[str | None]:
    """The schemas to inventory: `schema` if given; else the dialect's user schemas (on PostgreSQL
    every one, None standing for the default; elsewhere the connection's own database)."""
    if schema is not None:
        return [schema]
    return dialect_for(engine).user_schemas(inspector)


def _ref_schema(fk: dict, default: str | None) -> str | None:
    """The referred table's schema, None for the default schema (as tables record theirs)."""
    referred = fk.get("referred_schema")
    if referred is None:
        return None
    return None if referred == default else referred


def _on_delete(fk: dict, rules: dict[tuple[str, ...], str]) -> str | None:
    """The declared ON DELETE rule in upper case; None when the server states none (NO ACTION)."""
    rule = (fk.get("options") or {}).get("ondelete") or rules.get(tuple(fk["constrained_columns"]))
    rule = " ".join(str(rule).upper().split()) if rule else None
    return None if rule == "NO ACTION" else rule


def _unique_keys(inspector, name: str, schema: str | None, real, pk_cols: list[str]) -> list[list[str]]:
    """Unique constraints and unique indexes, each a list of column names (the primary key and
    expression indexes left out), deduplicated in order."""
    keys: list[list[str]] = []
    found = [u.get("column_names") for u in _reflected(inspector.get_unique_constraints, name, schema)]
    found += [
        i.get("column_names") for i in _reflected(inspector.get_indexes, name, schema) if i.get("unique")
    ]
    for cols in found:
        if not cols or any(c is None for c in cols):
            continue
        key = [real(c) for c in cols]
        if key != pk_cols and key not in keys:
            keys.append(key)
    return keys


def _reflected(method, name: str, schema: str | None) -> list[dict]:
    try:
        return list(method(name, schema=schema) or [])
    except NotImplementedError:  # a dialect without this reflection: no unique keys known
        return []


def _table_info(
    conn: sa.Connection,
    inspector,
    name: str,
    schema: str | None,
    count: Callable[[], int | sa.exc.DBAPIError] | None = None,
) -> TableInfo:
    """One table's reflection and row count: `count()` when given (`_Counts`), else counted here."""
    real = dialect_for(conn).column_name  # the inspector's names may keep the server's escaping
    pk = inspector.get_pk_constraint(name, schema=schema) or {}
    pk_cols = [real(c) for c in pk.get("constrained_columns") or []]
    columns = [
        ColumnInfo(
            name=real(c["name"]),
            type=type_text(c["type"]),
            nullable=bool(c.get("nullable", True)) and real(c["name"]) not in pk_cols,
            primary_key=real(c["name"]) in pk_cols,
            max_length=getattr(c["type"], "length", None),
        )
        for c in inspector.get_columns(name, schema=schema)
    ]
    rules = dialect_for(conn).delete_rules(conn, (schema, name))
    fks = [
        ForeignKey(
            columns=[real(c) for c in fk["constrained_columns"]],
            ref_table=fk["referred_table"],
            ref_columns=[real(c) for c in fk["referred_columns"]],
            ref_schema=_ref_schema(fk, inspector.default_schema_name),
            on_delete=_on_delete(fk, rules),
            name=fk.get("name") or None,
        )
        for fk in inspector.get_foreign_keys(name, schema=schema)
        if fk.get("referred_table")
    ]
    info = TableInfo(
        name=name,
        schema=schema,
        columns=columns,
        primary_key=pk_cols,
        foreign_keys=fks,
        unique_keys=_unique_keys(inspector, name, schema, real, pk_cols),
    )
    counted = count() if count is not None else _count(conn, name, schema, savepoint=True)
    if isinstance(counted, sa.exc.DBAPIError):
        info.problem = f"rows cannot be counted ({type(counted).__name__}: {_first_line(counted)})"
        log.warning("table %s: %s", info.qualified_name, info.problem)
    else:
        info.row_count = counted
    return info


def _count(conn: sa.Connection, name: str, schema: str | None, *, savepoint: bool) -> int | sa.exc.DBAPIError:
    """The table's exact row count, or the error that refused it (a lost connection is raised)."""
    try:
        # on the inventory's own connection, a refused count must not abort the rest of it
        with conn.begin_nested() if savepoint else conn.begin():
            table = sa.table(name, schema=schema)
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        return exc


def _count_apart(engine: sa.Engine, name: str, schema: str | None) -> int | sa.exc.DBAPIError:
    """`_count` on a connection of its own (a thread of `_Counts`)."""
    with engine.connect() as conn:
        return _count(conn, name, schema, savepoint=False)


def _mark_partitions(conn: sa.Connection, default: str | None, tables: list[TableInfo]) -> None:
    """Set `partition_of` and `partitioned` from the dialect (declarative partitions only)."""
    partitions, parents = dialect_for(conn).partitions(conn)

    def shown(ident: tuple[str | None, str]) -> str:
        return qualified(None if ident[0] == default else ident[0], ident[1])

    parent_of = {shown(child): shown(parent) for child, parent in partitions.items()}
    partitioned = {shown(p) for p in parents}
    for t in tables:
        t.partition_of = parent_of.get(t.qualified_name)
        t.partitioned = t.qualified_name in partitioned


def _first_line(exc: Exception) -> str:
    lines = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
    return lines[0][:300] if lines else ""


class _Bulk:
    """The inspector's per-table reflection (`get_columns`, `get_pk_constraint`, ...) answered from
    one query per schema and kind (`get_multi_columns`, ...) where the dialect has its own bulk
    reflection (PostgreSQL: its per-table methods filter the same queries to one name), else the
    inspector's own: a few queries for the whole source instead of a few per table."""

    _KINDS = ("columns", "pk_constraint", "foreign_keys", "unique_constraints", "indexes")

    def __init__(self, inspector) -> None:
        self._inspector = inspector
        self._found: dict[tuple[str, str | None], dict] = {}
        dialect = type(inspector.dialect)
        self._bulk = dialect.get_multi_columns is not sa.engine.default.DefaultDialect.get_multi_columns

    def __getattr__(self, attr: str):
        return getattr(self._inspector, attr)

    def _one(self, kind: str, name: str, schema: str | None):
        if self._bulk:
            key = (kind, schema)
            if key not in self._found:
                try:
                    self._found[key] = getattr(self._inspector, f"get_multi_{kind}")(schema=schema)
                except NotImplementedError:
                    self._found[key] = {}
            if (schema, name) in self._found[key]:
                return self._found[key][(schema, name)]
        return getattr(self._inspector, f"get_{kind}")(name, schema=schema)

    def get_columns(self, name: str, schema: str | None = None):
        return self._one("columns", name, schema)

    def get_pk_constraint(self, name: str, schema: str | None = None):
        return self._one("pk_constraint", name, schema)

    def get_foreign_keys(self, name: str, schema: str | None = None):
        return self._one("foreign_keys", name, schema)

    def get_unique_constraints(self, name: str, schema: str | None = None):
        return self._one("unique_constraints", name, schema)

    def get_indexes(self, name: str, schema: str | None = None):
        return self._one("indexes", name, schema)


#: connections counting rows side by side while the inventory reflects the tables (the server
#: reads every table for its count: on a large source most of the inventory's time)
COUNT_CONNECTIONS = 2


class _Counts:
    """The row counts of `names` ((schema, table) pairs), made on COUNT_CONNECTIONS connections of
    their own in threads while the caller reflects the tables, in the order given; none where the
    dialect scans one connection at a time (SQLite), the engine's pool holds a single connection,
    or there is a single table (`get` then returns None: the caller counts on its own connection,
    as before)."""

    def __init__(self, engine: sa.Engine, names: list[tuple[str | None, str]]) -> None:
        self._futures: dict = {}
        self._pool = None
        one_connection = (sa.pool.StaticPool, sa.pool.SingletonThreadPool, sa.pool.AssertionPool)
        if len(names) < 2 or not dialect_for(engine).parallel_scan or isinstance(engine.pool, one_connection):
            return
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(COUNT_CONNECTIONS, thread_name_prefix="dereg-count")
        self._futures = {key: self._pool.submit(_count_apart, engine, key[1], key[0]) for key in names}

    def get(self, schema: str | None, name: str) -> Callable[[], int | sa.exc.DBAPIError] | None:
        future = self._futures.get((schema, name))
        return future.result if future is not None else None

    def __enter__(self) -> _Counts:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:  # an inventory that failed does not wait for the counts not started
            self._pool.shutdown(wait=True, cancel_futures=True)


def inventory_source(engine: sa.Engine, source_id: str, schema: str | None = None) -> SourceInventory:
    """Reflect every table of every user schema (or of `schema`) and count its rows. A table that
    cannot be counted (no permission) is kept with its `problem`; an unreachable source is an error."""
    tables: list[TableInfo] = []
    database = dialect_for(engine).missing_file(engine.url)
    if database is not None:
        # SQLite would quietly create an empty file and report a source without tables
        raise SourceError(
            f"source {source_id}: SQLite file {database} does not exist; check the connection's host/path"
        )
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            names = [
                (each, name)
                for each in _schemas(engine, inspector, schema)
                for name in sorted(inspector.get_table_names(schema=each))
            ]
            bulk = _Bulk(inspector)
            with _Counts(engine, names) as counts:
                for each, name in names:
                    tables.append(_table_info(conn, bulk, name, each, counts.get(each, name)))
            _mark_partitions(conn, inspector.default_schema_name, tables)
    except sa.exc.SQLAlchemyError as exc:
        message = _first_line(exc)
        if engine.url.password:
            message = message.replace(str(engine.url.password), "***")
        raise SourceError(
            f"source {source_id}: cannot read the database at {_where(engine)} ({type(exc).__name__}: "
            f"{message}); check that the server is running, the connection's host, port, database and "
            "credentials, and that its user may read every table"
        ) from exc
    log.info("inventory of %s: %d tables, %d rows", source_id, len(tables), sum(t.row_count for t in tables))
    return SourceInventory(source_id=source_id, dialect=recorded_name(engine), tables=tables)
