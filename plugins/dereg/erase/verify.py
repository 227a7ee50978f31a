"""Verify an erasure against its plan, by asking the database again rather than trusting the run.

Deleted tables must be empty; pseudonymized tables must keep exactly the planned rows with only
tokens (or NULL) left in their personal columns; the full scan of every value must find nothing
personal; on PostgreSQL the touched tables must hold no dead tuples (the deleted rows' bytes).
Dead tuples are counted exactly with the `pgstattuple` extension when it is installed; without it
the statistics views are read, which can lag behind, so a non-zero count there is reported as a
note, not a failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dereg.dialects import dialect_for
from dereg.erase.execute import TOKEN_PREFIX
from dereg.erase.plan import ErasurePlan
from dereg.model import SourceInventory

log = logging.getLogger(__name__)


@dataclass
class Verification:
    ok: bool
    problems: list[str] = field(default_factory=list)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _not_token(col: sa.Column):
    if isinstance(col.type, sa.String):
        return sa.and_(col.is_not(None), sa.not_(col.startswith(TOKEN_PREFIX, autoescape=True)))
    return col.is_not(None)


def _count(conn: Connection, table: sa.Table, where=None) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    return int(conn.execute(query).scalar_one())


def verify_erasure(
    engine: Engine, plan: ErasurePlan, inventory_after: SourceInventory, hits: dict[tuple[str, str], int]
) -> Verification:
    """Check the source against `plan` after erase and purge; `hits` is the full scan's (table, column) -> count."""
    result = Verification(ok=False)
    present = {t.qualified_name for t in inventory_after.tables}
    metadata = sa.MetaData()
    touched = []
    with engine.connect() as conn:
        for action in plan.tables:
            if action.action == "keep":
                continue
            entry: dict[str, Any] = {
                "action": action.action,
                "expected_rows": action.rows,
                "rows": None,
                "ok": False,
            }
            result.tables[action.table] = entry
            if action.table not in present:
                if action.action == "delete":
                    entry.update(rows=0, ok=True)
                    result.notes.append(
                        f"{action.table}: the table no longer exists (dropped after the plan)"
                    )
                else:
                    result.problems.append(
                        f"{action.table}: the table kept by law is missing after erasure; "
                        "restore it from the backup"
                    )
                continue
            schema, name = action.ident
            table = sa.Table(name, metadata, schema=schema, autoload_with=conn)
            touched.append(action.ident)
            rows = entry["rows"] = _count(conn, table)
            if action.action == "delete":
                entry["expected_rows"] = 0
                entry["ok"] = rows == 0
                if rows:
                    result.problems.append(
                        f"{action.table}: {rows} rows left after deletion (the plan deletes "
                        "all); run the erase task again"
                    )
                continue
            left = {
                c: _count(conn, table, _not_token(table.c[c])) if c in table.c else None
                for c in action.columns
            }
            entry["values_not_pseudonymized"] = left
            entry["ok"] = rows == action.rows and all(n == 0 for n in left.values())
            if rows != action.rows:
                result.problems.append(
                    f"{action.table}: {rows} rows kept, the plan says {action.rows} "
                    "(records kept by law must all stay)"
                )
            for c, n in left.items():
                if n is None:
                    result.problems.append(f"{action.table}.{c}: the planned column is missing")
                elif n:
                    result.problems.append(
                        f"{action.table}.{c}: {n} values are not pseudonymized; run the erase task again"
                    )
        if touched:  # PostgreSQL counts the dead tuples; other databases cannot tell
            dialect_for(engine).check_dead_rows(conn, touched, result)
    for (table, column), count in sorted(hits.items()):
        result.problems.append(f"{table}.{column}: the full scan still finds {count} personal values")
    result.ok = not result.problems
    log.info("verification of %s: ok=%s, %d problem(s)", plan.source_id, result.ok, len(result.problems))
    return result
