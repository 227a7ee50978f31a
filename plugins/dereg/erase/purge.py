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

from dereg.dialects import dialect_for, sqlalchemy_name
from dereg.dialects.base import TableIdent, shown_name
from dereg.errors import ErasureError
from dereg.redact import database_error


def purge(engine: Engine, tables: list[str | TableIdent]) -> dict:
    """Physically remove deleted rows of `tables` ((schema, name) pairs, or default-schema names);
    returns what was done and what it could not reach."""
    dialect = sqlalchemy_name(engine)
    notes: list[str] = []
    try:
        method = dialect_for(engine).purge(engine, tables, notes)
    except sa.exc.SQLAlchemyError as exc:
        raise ErasureError(
            f"purge on {dialect} ({len(tables)} tables) failed: {database_error(exc)}; the erased rows may "
            "still be in the "
            "database files. Fix the cause (the user must own the tables) and run the purge task again."
        ) from None
    return {"dialect": dialect, "method": method, "tables": sorted(map(shown_name, tables)), "notes": notes}
