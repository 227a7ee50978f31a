"""Purge: make deleted rows leave the database files, not only the table's visible contents.

A DELETE marks rows dead; their bytes stay in the pages until the table is rewritten. SQLite:
`secure_delete` zeroes freed content and `VACUUM` rewrites the file (and a WAL checkpoint empties
the write-ahead log). PostgreSQL: `VACUUM FULL` rewrites each table into new files, then
`CHECKPOINT` flushes. MariaDB/MySQL: `ALTER TABLE ... FORCE` rebuilds the table (InnoDB with
file-per-table writes a new .ibd). What a method cannot reach (logs, old files on disk blocks) is
said in the result's notes rather than left unsaid.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.errors import ErasureError
from dereg.redact import redact


def _sqlite(engine: Engine, notes: list[str]) -> str:
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses to run in a transaction
        conn.exec_driver_sql("PRAGMA secure_delete=ON")
        conn.exec_driver_sql("VACUUM")
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        if str(mode).lower() == "wal":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            notes.append("WAL checkpointed and truncated")
    return "PRAGMA secure_delete=ON; VACUUM (whole database file rewritten)"


def _postgresql(engine: Engine, tables: list[str], notes: list[str]) -> str:
    quote = engine.dialect.identifier_preparer.quote
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses to run in a transaction
        for t in tables:
            # ANALYZE too: VACUUM FULL alone leaves n_dead_tup as the deletes reported it
            conn.exec_driver_sql(f"VACUUM (FULL, ANALYZE) {quote(t)}")
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


def _mysql(engine: Engine, tables: list[str], notes: list[str]) -> str:
    quote = engine.dialect.identifier_preparer.quote
    with engine.connect() as conn:
        per_table = conn.exec_driver_sql("SELECT @@innodb_file_per_table").scalar()
        for t in tables:
            conn.exec_driver_sql(f"ALTER TABLE {quote(t)} FORCE")
    if not per_table:
        notes.append(
            "innodb_file_per_table is off: tables live in the shared system tablespace, whose freed "
            "pages are reused but not returned or overwritten at once"
        )
    notes.append(
        "InnoDB undo and redo logs, and the binary log if enabled, may hold old row images until "
        "they are purged or overwritten"
    )
    return "ALTER TABLE ... FORCE of each touched table (InnoDB rebuild into a new tablespace)"


def purge(engine: Engine, tables: list[str]) -> dict:
    """Physically remove deleted rows of `tables`; returns what was done and what it could not reach."""
    dialect = engine.dialect.name
    notes: list[str] = []
    try:
        if dialect == "sqlite":
            method = _sqlite(engine, notes)
        elif dialect == "postgresql":
            method = _postgresql(engine, tables, notes)
        elif dialect in ("mysql", "mariadb"):
            method = _mysql(engine, tables, notes)
        else:
            method = "none"
            notes.append(
                f"no purge known for dialect {dialect}: deleted rows may remain in the database files"
            )
    except sa.exc.SQLAlchemyError as exc:
        raise ErasureError(
            f"purge on {dialect} ({len(tables)} tables) failed: {type(exc).__name__}: "
            f"{redact(str(getattr(exc, 'orig', None) or exc), 300)}; the erased rows may still be in the "
            "database files. Fix the cause (the user must own the tables) and run the purge task again."
        ) from None
    return {"dialect": dialect, "method": method, "tables": sorted(tables), "notes": notes}
