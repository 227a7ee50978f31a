"""Verify an erasure: deleted tables empty, kept tables with exactly the planned rows and only tokens
in their personal columns, no personal value anywhere in a full scan, and on PostgreSQL no dead
tuples left in the touched tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.erase.execute import TOKEN_PREFIX
from dereg.erase.plan import ErasurePlan
from dereg.model import SourceInventory


@dataclass
class Verification:
    ok: bool
    problems: list[str] = field(default_factory=list)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)


def verify_erasure(engine: Engine, plan: ErasurePlan, inventory_after: SourceInventory,
                   hits: dict[tuple[str, str], int]) -> Verification:
    result = Verification(ok=False)
    rows_after = {t.name: t.row_count for t in inventory_after.tables}
    with engine.connect() as conn:
        for action in plan.tables:
            if action.action == "keep":
                continue
            rows = rows_after.get(action.table)
            entry: dict[str, Any] = {"action": action.action, "planned_rows": action.rows, "rows_after": rows}
            if rows is None:
                result.problems.append(f"table {action.table} is missing after erasure")
                entry["ok"] = False
            elif action.action == "delete":
                entry["ok"] = rows == 0
                if rows:
                    result.problems.append(f"{action.table}: {rows} rows left after deletion")
            else:
                table = sa.table(action.table, *[sa.column(c) for c in action.columns])
                left = {}
                for c in action.columns:
                    col = table.c[c]
                    left[c] = conn.execute(sa.select(sa.func.count()).select_from(table).where(
                        col.is_not(None), sa.not_(sa.cast(col, sa.String).like(TOKEN_PREFIX + "%")))).scalar_one()
                entry["values_not_pseudonymized"] = left
                entry["ok"] = rows == action.rows and not any(left.values())
                if rows != action.rows:
                    result.problems.append(f"{action.table}: {rows} rows kept, the plan says {action.rows}")
                for c, n in left.items():
                    if n:
                        result.problems.append(f"{action.table}.{c}: {n} values are not pseudonymized")
            result.tables[action.table] = entry
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            touched = [a.table for a in plan.tables if a.action != "keep"]
            dead = dict(conn.execute(sa.text(
                "SELECT relname, n_dead_tup FROM pg_stat_user_tables WHERE relname = ANY(:t)"), {"t": touched}).all())
            for t in touched:
                result.tables.setdefault(t, {})["dead_tuples"] = dead.get(t)
                if dead.get(t):
                    result.problems.append(f"{t}: {dead[t]} dead tuples still in the table's pages (purge again)")
    for (table, column), count in sorted(hits.items()):
        result.problems.append(f"{table}.{column}: the full scan still finds {count} personal values")
    result.ok = not result.problems
    return result
