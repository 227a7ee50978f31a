"""What differs between databases, in one module per database behind one protocol (base.py).

`dialect_for(engine_or_url)` gives the module's `Dialect` for an engine, a connection, a URL or a
URL string; a database without a module gets the generic one (plain SQLAlchemy). Nothing outside
this package asks which database it talks to. Adding a database: docs/dialects.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from dereg.dialects import mysql, postgresql, sqlite
from dereg.dialects.base import GENERIC, Dialect

__all__ = [
    "DIALECTS",
    "Dialect",
    "dialect_for",
    "dialect_for_connection_type",
    "disposing",
    "normalize_url",
    "recorded_name",
    "sqlalchemy_name",
    "type_text",
]

#: every dialect module's `Dialect`, in the order the documentation lists them
DIALECTS: tuple[Dialect, ...] = (postgresql.DIALECT, mysql.DIALECT, sqlite.DIALECT)
_BY_NAME = {n: d for d in DIALECTS for n in d.sqlalchemy_names}


def sqlalchemy_name(engine_or_url: Engine | Connection | URL | str) -> str:
    """SQLAlchemy's own name of the database: `engine.dialect.name` ("mariadb" for a mariadb://
    URL), or the URL's backend name."""
    if isinstance(engine_or_url, Engine | Connection):
        return engine_or_url.dialect.name
    return sa.make_url(engine_or_url).get_backend_name()


def dialect_for(engine_or_url: Engine | Connection | URL | str) -> Dialect:
    """The `Dialect` of an engine, a connection, a URL or a URL string."""
    return _BY_NAME.get(sqlalchemy_name(engine_or_url), GENERIC)


def dialect_for_connection_type(conn_type: str) -> Dialect:
    """The `Dialect` of an Airflow connection type ("postgres", "mysql", "sqlite"), or a SQLAlchemy
    name; the generic one for any other."""
    for dialect in DIALECTS:
        if conn_type in dialect.connection_types or conn_type in dialect.sqlalchemy_names:
            return dialect
    return GENERIC


def recorded_name(engine_or_url: Engine | Connection | URL | str) -> str:
    """The name inventories record: the dialect module's ("postgresql", "mysql" also for MariaDB,
    "sqlite"); for a database without a module, SQLAlchemy's."""
    found = dialect_for(engine_or_url)
    return found.name if found is not GENERIC else sqlalchemy_name(engine_or_url)


def normalize_url(url: URL | str) -> URL:
    """`url` with the driver Dereg installs when it names none (`postgresql://` becomes
    `postgresql+psycopg2://`: SQLAlchemy's own default, psycopg 3, is not installed)."""
    url = sa.make_url(url)
    return dialect_for(url).normalize_url(url)


@contextmanager
def disposing(engine: Engine) -> Iterator[Engine]:
    """`with disposing(create_engine(...)) as engine:` closes the engine's pool however the block ends."""
    try:
        yield engine
    finally:
        engine.dispose()


def type_text(column_type: sa.types.TypeEngine) -> str:
    """A column type as its dialect writes it (`VARCHAR(20)`), or its class name when the type
    cannot be rendered on its own; inventories and backup manifests record this text."""
    try:
        return str(column_type)
    except Exception:  # noqa: BLE001 - some dialect types cannot render without a dialect
        return type(column_type).__name__
