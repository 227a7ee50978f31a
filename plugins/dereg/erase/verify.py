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


def _dead_tuples(conn: Connection, tables: list[str], result: Verification) -> None:
    """PostgreSQL: dead tuples per touched table; exact with pgstattuple, else from (lagging) statistics."""
    quote = conn.dialect.identifier_preparer.quote
    exact = (
        conn.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pgstattuple'")).first() is not None
    )
    if exact:
        try:
            with conn.begin_nested():
                dead = {
                    t: int(
                        conn.execute(
                            sa.text("SELECT dead_tuple_count FROM pgstattuple(CAST(:t AS regclass))"),
                            {"t": quote(t)},
                        ).scalar_one()
                    )
                    for t in tables
                }
        except sa.exc.DBAPIError as exc:
            exact = False
            result.notes.append(
                f"pgstattuple refused ({type(exc.orig).__name__}; needs pg_stat_scan_tables); "
                "dead tuples read from statistics instead"
            )
    if exact:
        for t in tables:
            result.tables[t]["dead_tuples"] = dead[t]
            if dead[t]:
                result.problems.append(
                    f"{t}: {dead[t]} dead tuples (deleted rows' bytes) still in the table's "
                    "pages; run the purge task again"
                )
        return
    conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
    stats = dict(
        conn.execute(
            sa.text(
                "SELECT relname, n_dead_tup FROM pg_stat_user_tables "
                "WHERE schemaname = current_schema() AND relname = ANY(:t)"
            ),
            {"t": tables},
        ).all()
    )
    lagging = []
    for t in tables:
        result.tables[t]["dead_tuples_stats"] = stats.get(t)
        if stats.get(t):
            lagging.append(f"{t}: {stats[t]}")
    result.notes.append(
        "dead tuples read from pg_stat_user_tables, which can lag behind; install the "
        "pgstattuple extension for an exact check"
    )
    if lagging:
        result.notes.append("statistics still count dead tuples (may be stale): " + ", ".join(lagging))


def verify_erasure(
    engine: Engine, plan: ErasurePlan, inventory_after: SourceInventory, hits: dict[tuple[str, str], int]
) -> Verification:
    """Check the source against `plan` after erase and purge; `hits` is the full scan's (table, column) -> count."""
    result = Verification(ok=False)
    present = {t.name for t in inventory_after.tables}
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
            table = sa.Table(action.table, metadata, autoload_with=conn)
            touched.append(action.table)
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
        if engine.dialect.name == "postgresql" and touched:
            _dead_tuples(conn, touched, result)
    for (table, column), count in sorted(hits.items()):
        result.problems.append(f"{table}.{column}: the full scan still finds {count} personal values")
    result.ok = not result.problems
    log.info("verification of %s: ok=%s, %d problem(s)", plan.source_id, result.ok, len(result.problems))
    return result
