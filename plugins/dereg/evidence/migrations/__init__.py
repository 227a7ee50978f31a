"""Migrations of the compliance store (alembic), applied whenever a store is opened.

`open_store` calls `upgrade_store`: a store already at `HEAD` costs a query or two and does not
import alembic (half a second: it loads every SQLAlchemy dialect); any other is brought there
inside one transaction. A new store gets the baseline (0.1.0's tables)
and every revision after it; a store that release 0.1.0 made with `create_all` (its tables, no
`dereg_alembic_version`) is adopted by the baseline, which creates only what is missing, and then
upgraded like any other. Two processes opening the same store at once (Celery workers) take
turns: on PostgreSQL under an advisory lock held to the end of the transaction, on SQLite under
the write lock `BEGIN IMMEDIATE` takes (see store.py); the second finds the work done.

There is no alembic.ini: `alembic_config` builds the configuration in code, and the revisions
ship inside the package (`versions/`).

Adding a migration (a column, a table, an index):
1. change the table in its module (`evidence/ledger.py`, `backup/catalog.py`, `notify/...`);
2. `python -m dereg.evidence.migrations revision "add backups.region"` writes
   `versions/<rev>_add_backups_region.py` from the difference between the models and a store at
   the newest revision; read it, make it work on SQLite too (`op.batch_alter_table` for anything
   beyond adding a column), fill existing rows if the new column needs a value;
3. set `HEAD` below to the new revision id;
4. tests/unit/evidence/test_store_migrations.py fails until `HEAD`, the revisions and the models
   agree.
Never edit a released revision or `baseline.py`; add a revision instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

#: where the store records its revision: not alembic's default `alembic_version`, which Airflow's
#: own metadata database has too (a store placed beside it must not read Airflow's revision)
VERSION_TABLE = "dereg_alembic_version"
#: the newest revision in versions/ (a test checks it is alembic's head)
HEAD = "0002"

HERE = Path(__file__).resolve().parent
#: an arbitrary constant: the PostgreSQL advisory lock key of store migrations ("dere")
_LOCK_KEY = 0x64657265


def alembic_config(connection: Connection | None = None, version_dirs: Sequence[Path] = ()) -> Config:
    """alembic's configuration for the store, built in code: our env.py and versions/, plus
    `version_dirs` (more revision folders; tests use one), migrating on `connection`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    locations = [HERE / "versions", *map(Path, version_dirs)]
    config.set_main_option("version_locations", " ".join(str(p) for p in locations))
    config.set_main_option("path_separator", "space")
    config.attributes["connection"] = connection
    return config


def head_revisions(version_dirs: Sequence[Path] = ()) -> set[str]:
    """The newest revision(s) the code knows."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config(version_dirs=version_dirs)).get_heads())


def current_revisions(conn: Connection) -> set[str]:
    """The revision(s) the store is at; empty for a new store or one made before migrations."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return set()
    return set(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())


def upgrade_store(engine: Engine, *, version_dirs: Sequence[Path] = ()) -> None:
    """Bring the store at `engine` to the newest revision (see the module docstring);
    `version_dirs`: more revision folders (tests)."""
    heads = head_revisions(version_dirs) if version_dirs else {HEAD}
    with engine.connect() as conn:
        if current_revisions(conn) == heads:
            return
    from alembic import command

    with engine.begin() as conn:
        _serialise_migrations(conn)
        before = current_revisions(conn)  # again, under the lock: another process may have done it
        if before == heads:
            return
        if not before and sa.inspect(conn).has_table("ledger"):
            log.info("compliance store made before migrations: adopted at the baseline revision")
        command.upgrade(alembic_config(conn, version_dirs), "heads")
    log.info(
        "compliance store upgraded from %s to %s",
        ", ".join(sorted(before)) or "nothing",
        ", ".join(sorted(heads)),
    )


def _serialise_migrations(conn: Connection) -> None:
    from dereg.dialects import dialect_for

    dialect_for(conn).lock_store_migrations(conn, _LOCK_KEY)
