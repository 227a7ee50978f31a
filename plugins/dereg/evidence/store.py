"""The compliance store: Dereg's own database, outside Airflow's metadata DB.

Every area declares its tables on the shared `metadata` (ledger here in `evidence.ledger`, the
backup catalog in `backup.catalog`, notices in `notify.records`); `open_store` imports them all
and brings the store to the newest migration (`evidence/migrations/`, alembic). SQLite by
default, PostgreSQL in production.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg import config

metadata = sa.MetaData()

# Modules that declare tables on `metadata`; imported before the store is migrated.
_TABLE_MODULES = (
    "dereg.evidence.ledger",
    "dereg.evidence.artifacts",
    "dereg.backup.catalog",
    "dereg.notify.records",
    "dereg.notify.answers",
    "dereg.notify.fulfil",
)


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # Let SQLAlchemy, not pysqlite, issue BEGIN, so that BEGIN IMMEDIATE takes the write
            # lock up front and two tasks appending to the ledger serialise instead of deadlocking.
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA busy_timeout=60000")

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def open_store(url: str | None = None) -> Engine:
    """Engine of the compliance store at `url` (default `config.store_url()`, read at each call),
    tables created; one engine per URL."""
    return _open_store(url or config.store_url())


@lru_cache(maxsize=16)
def _open_store(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    for module in _TABLE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # an area not written yet declares no tables
            if not module.startswith(exc.name or "\0"):
                raise
    engine = _make_engine(url)
    from dereg.evidence.migrations import upgrade_store

    try:
        upgrade_store(engine)
    except BaseException:
        engine.dispose()  # not cached: the next open tries again with a new engine
        raise
    return engine
