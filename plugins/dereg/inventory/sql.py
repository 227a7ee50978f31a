"""Inventory of a SQL source by SQLAlchemy reflection.

Tables, columns (type as text, nullability, primary key, maximum length), primary and foreign
keys and exact row counts. Nothing but names and counts leaves this module.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa

from dereg.errors import SourceError
from dereg.model import ColumnInfo, ForeignKey, SourceInventory, TableInfo
from dereg.redact import redact

log = logging.getLogger(__name__)

_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql"}


def dialect_name(engine: sa.Engine) -> str:
    """ "sqlite", "postgresql" or "mysql" (MariaDB counts as mysql); other names as SQLAlchemy has them."""
    return _DIALECTS.get(engine.dialect.name, engine.dialect.name)


def _where(engine: sa.Engine) -> str:
    url = engine.url
    if url.host:
        return f"host {url.host}" + (f":{url.port}" if url.port else "")
    return f"file {url.database}" if url.database else "an in-memory database"


def _type_text(column_type) -> str:
    try:
        return str(column_type)
    except Exception:  # noqa: BLE001 - some dialect types cannot render without a dialect
        return type(column_type).__name__.upper()


_SYSTEM_SCHEMAS = frozenset(
    {"information_schema", "pg_catalog", "pg_toast", "mysql", "performance_schema", "sys"}
)


def _schemas(engine: sa.Engine, inspector, schema: str | None) -> list[str | None]:
    """The schemas to inventory: `schema` if given; on PostgreSQL every user schema (None stands
    for the default one); elsewhere the connection's own database."""
    if schema is not None:
        return [schema]
    if engine.dialect.name != "postgresql":
        return [None]
    default = inspector.default_schema_name
    others = sorted(
        s
        for s in inspector.get_schema_names()
        if s not in _SYSTEM_SCHEMAS and not s.startswith("pg_") and s != default
    )
    return [None, *others]


def _table_info(conn: sa.Connection, inspector, name: str, schema: str | None) -> TableInfo:
    pk = inspector.get_pk_constraint(name, schema=schema) or {}
    pk_cols = list(pk.get("constrained_columns") or [])
    columns = [
        ColumnInfo(
            name=c["name"],
            type=_type_text(c["type"]),
            nullable=bool(c.get("nullable", True)) and c["name"] not in pk_cols,
            primary_key=c["name"] in pk_cols,
            max_length=getattr(c["type"], "length", None),
        )
        for c in inspector.get_columns(name, schema=schema)
    ]
    fks = [
        ForeignKey(
            columns=list(fk["constrained_columns"]),
            ref_table=fk["referred_table"],
            ref_columns=list(fk["referred_columns"]),
        )
        for fk in inspector.get_foreign_keys(name, schema=schema)
        if fk.get("referred_table")
    ]
    info = TableInfo(name=name, schema=schema, columns=columns, primary_key=pk_cols, foreign_keys=fks)
    try:
        with conn.begin_nested():  # a refused count must not abort the rest of the inventory
            table = sa.table(name, schema=schema)
            info.row_count = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        info.problem = f"rows cannot be counted ({type(exc).__name__}: {_first_line(exc)})"
        log.warning("table %s: %s", info.qualified_name, info.problem)
    return info


def _first_line(exc: Exception) -> str:
    lines = redact(str(getattr(exc, "orig", None) or exc)).strip().splitlines()
    return lines[0][:300] if lines else ""


def inventory_source(engine: sa.Engine, source_id: str, schema: str | None = None) -> SourceInventory:
    """Reflect every table of every user schema (or of `schema`) and count its rows. A table that
    cannot be counted (no permission) is kept with its `problem`; an unreachable source is an error."""
    tables: list[TableInfo] = []
    database = engine.url.database
    if (
        engine.dialect.name == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
    ):
        if not Path(database).is_file():
            # SQLite would quietly create an empty file and report a source without tables
            raise SourceError(
                f"source {source_id}: SQLite file {database} does not exist; check the connection's host/path"
            )
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            for each in _schemas(engine, inspector, schema):
                for name in sorted(inspector.get_table_names(schema=each)):
                    tables.append(_table_info(conn, inspector, name, each))
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
    return SourceInventory(source_id=source_id, dialect=dialect_name(engine), tables=tables)
