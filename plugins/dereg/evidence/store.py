"""The compliance store: Dereg's own database, outside Airflow's metadata DB.

Every area declares its tables on the shared `metadata` (ledger here in `evidence.ledger`, the
backup catalog in `backup.catalog`, notices in `notify.records`); `open_store` brings the store to
the newest migration (`evidence/migrations/`, alembic), whose environment imports them all. SQLite by
default, PostgreSQL in production.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg import config
from dereg.dialects import dialect_for, normalize_url

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
    # on SQLite the dialect makes the file's folder and has writers take the lock at BEGIN (so
    # ledger appends serialise)
    return dialect_for(url).store_engine(normalize_url(url))


def open_store(url: str | None = None) -> Engine:
    """Engine of the compliance store at `url` (default `config.store_url()`, read at each call),
    tables created; one engine per URL."""
    return _open_store(url or config.store_url())


def declared_metadata() -> sa.MetaData:
    """The store's tables as the modules declare them now (what alembic's autogenerate compares
    a store with)."""
    for module in _TABLE_MODULES:
        importlib.import_module(module)
    return metadata


@lru_cache(maxsize=16)
def _open_store(url: str) -> Engine:
    # the table modules are not imported here: each area imports its own, and a migration imports
    # them all (migrations/env.py); a store already at the newest revision needs none of them
    # (importing the notify ones costs a tenth of a second of every command)
    engine = _make_engine(url)
    from dereg.evidence.migrations import upgrade_store

    try:
        upgrade_store(engine)
    except BaseException:
        engine.dispose()  # not cached: the next open tries again with a new engine
        raise
    return engine
