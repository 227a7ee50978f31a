"""Verify an erasure against its plan, by asking the database again rather than trusting the run.

Per table, as the plan says: a table deleted whole is empty; a table whose linked rows were deleted
holds exactly its other rows (rows at plan time less the rows deleted), and, where the subject
table's keys were recorded before the erase (`subject_keys`), no row whose chain of links reaches
an erased subject's key is left; a pseudonymized table keeps every row, with only tokens (or NULL)
left in the planned columns of the rows it took; every kept table (untouched or kept by law) has
exactly the rows the plan counted. The full scan of every value must find nothing personal where
the plan erased, except in columns the manifest's overrides declare not personal (the plan left
them, so verification does too); values found in rows the plan leaves on purpose (rows not linked to
a subject, a table kept as it is by law) are reported as notes. On PostgreSQL the touched tables
must hold no dead tuples (the deleted rows' bytes), counted exactly with `pgstattuple` when it is
installed, else from the statistics views (a non-zero count there is a note: they lag).

Why keys, and which: the subject table's primary key values are references, not personal data, so
erase records them (before it changes anything) as a run artifact; verification follows each
table's chain with the subject hop replaced by those values. A chain through a table whose rows the
plan deleted cannot be followed afterwards: for those tables the row count proves the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dereg.dialects import dialect_for
from dereg.erase.execute import TOKEN_PREFIX, among
from dereg.erase.plan import ErasurePlan, TableAction, rows_kept
from dereg.erase.selection import count_rows, reflect, selection
from dereg.model import SourceInventory

log = logging.getLogger(__name__)

#: keys per IN list when following chains from the recorded subject keys
KEY_CHUNK = 2000


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
    return count_rows(conn, table, where)


def _and(*conditions):
    kept = [c for c in conditions if c is not None]
    return sa.and_(*kept) if kept else None


def _followable(plan: ErasurePlan, action: TableAction, keys: Mapping[str, Any] | None) -> bool:
    """Whether `action`'s chains can be followed after the erase from the recorded subject keys:
    each ends on the subject's key columns and no table between holds rows the plan deleted."""
    if not keys or not keys.get("columns") or action.scope != "linked" or not action.via:
        return False
    deleted = {t.table for t in plan.tables if t.action == "delete"}
    for chain in [action.via, *action.via_also]:
        last = chain[-1]
        if last["table"] != plan.subject_table or list(last["ref_columns"]) != list(keys["columns"]):
            return False
        if any(h["table"] in deleted for h in chain[:-1]):
            return False
    return True


def _by_keys(
    conn: Connection,
    metadata: sa.MetaData,
    table: sa.Table,
    action: TableAction,
    keys: Mapping[str, Any],
    extra=None,
) -> int:
    """Rows of `table` whose chains reach one of the recorded subject keys (and `extra`), summed
    over its chains (a row two chains reach counts twice: the figure is a proof of zero, not a tally)."""
    values = [tuple(v) for v in keys["values"]]
    total = 0
    for chain in [action.via, *action.via_also]:
        *between, last = chain
        if between:
            hop_table = reflect(conn, metadata, between[-1].get("schema"), between[-1].get("name"))
        else:
            hop_table = table
        cols = [hop_table.c[c] for c in last["columns"]]
        for start in range(0, len(values), KEY_CHUNK):
            chunk = values[start : start + KEY_CHUNK]
            root = cols[0].in_([v[0] for v in chunk]) if len(cols) == 1 else sa.tuple_(*cols).in_(chunk)
            where = _chain_to(conn, metadata, table, between, root) if between else root
            total += count_rows(conn, table, _and(where, extra))
    return total


def _chain_to(conn, metadata, table: sa.Table, hops: list[dict[str, Any]], root) -> Any:
    hop = hops[0]
    target = reflect(conn, metadata, hop.get("schema"), hop.get("name") or hop["table"])
    sub = sa.select(*[target.c[c] for c in hop["ref_columns"]])
    sub = sub.where(_chain_to(conn, metadata, target, hops[1:], root) if len(hops) > 1 else root)
    left = [table.c[c] for c in hop["columns"]]
    return left[0].in_(sub) if len(left) == 1 else sa.tuple_(*left).in_(sub)


def left_on_purpose(action: TableAction, column: str) -> bool:
    """Whether the plan leaves personal values in `column` on purpose: a table kept by law as it is,
    or rows the plan does not take (not linked to a subject: their values are not the erased
    customers'). Rows it takes are checked by key and count, not here."""
    if action.action == "keep":
        return action.scope == "linked" or "as they are" in action.reason or action.decided == "keep"
    return action.scope == "linked" and action.rows_total > action.rows


def verify_erasure(
    engine: Engine,
    plan: ErasurePlan,
    inventory_after: SourceInventory,
    hits: dict[tuple[str, str], int],
    *,
    not_personal: Collection[tuple[str, str]] = (),
    subject_keys: Mapping[str, Any] | None = None,
) -> Verification:
    """Check the source against `plan` after erase and purge; `hits` is the full scan's (table,
    column) -> count; `not_personal`: (table, column) the manifest's overrides declare not
    personal; `subject_keys`: {"columns", "values"} of the subject table recorded before erase."""
    result = Verification(ok=False)
    present = {t.qualified_name: t for t in inventory_after.tables}
    metadata = sa.MetaData()
    touched = []
    with engine.connect() as conn:
        for action in plan.tables:
            if action.partitioned:
                result.notes.append(f"{action.table}: partitioned; its partitions are verified")
                continue
            entry: dict[str, Any] = {
                "action": action.action,
                "scope": action.scope,
                "expected_rows": rows_kept(action),
                "rows": None,
                "ok": False,
            }
            result.tables[action.table] = entry
            if action.table not in present:
                if action.action == "delete" and action.scope == "all":
                    entry.update(rows=0, ok=True)
                    result.notes.append(
                        f"{action.table}: the table no longer exists (dropped after the plan)"
                    )
                else:
                    result.problems.append(
                        f"{action.table}: the table is missing after erasure, but the plan keeps "
                        f"{rows_kept(action)} of its rows; restore it from the backup"
                    )
                continue
            table = reflect(conn, metadata, *action.ident)
            rows = entry["rows"] = _count(conn, table)
            want = rows_kept(action)
            if action.action != "keep":
                touched.append(action.ident)
            if rows != want:
                if action.action == "delete" and rows > want:
                    result.problems.append(
                        f"{action.table}: {rows} rows left, the plan leaves {want} (it deletes "
                        f"{action.rows} of {action.rows_total}); run the erase task again"
                    )
                else:
                    result.problems.append(
                        f"{action.table}: {rows} rows now, the plan keeps {want} (rows that must stay "
                        "were removed or added); compare with the backup"
                    )
            ok = rows == want
            followable = _followable(plan, action, subject_keys)
            held = ((subject_keys or {}).get("referenced") or {}).get(action.table)
            if held is not None:  # rows the subjects referred to, recorded before the erase
                recorded = among(table, list(held["columns"]), [tuple(v) for v in held["values"]])
            if action.action == "delete" and held is not None:
                left = _count(conn, table, recorded)
                entry["rows_linked_to_erased_subjects"] = left
                if left:
                    ok = False
                    result.problems.append(
                        f"{action.table}: {left} rows the erased subjects referred to are left (by key); "
                        "run the erase task again"
                    )
            elif action.action == "delete" and followable:
                left = _by_keys(conn, metadata, table, action, subject_keys)
                entry["rows_linked_to_erased_subjects"] = left
                if left:
                    ok = False
                    result.problems.append(
                        f"{action.table}: {left} rows still linked to erased subjects (by key); run the "
                        "erase task again"
                    )
            if action.action == "pseudonymize":
                left_by_column = {}
                for c in action.columns:
                    if c not in table.c:
                        left_by_column[c] = None
                        continue
                    pending = _not_token(table.c[c])
                    if action.scope == "all":
                        left_by_column[c] = _count(conn, table, pending)
                    elif held is not None:
                        left_by_column[c] = _count(conn, table, _and(recorded, pending))
                    elif followable:
                        left_by_column[c] = _by_keys(conn, metadata, table, action, subject_keys, pending)
                    else:
                        where = selection(conn, metadata, table, action)
                        left_by_column[c] = _count(conn, table, _and(where, pending))
                entry["values_not_pseudonymized"] = left_by_column
                for c, n in left_by_column.items():
                    if n is None:
                        ok = False
                        result.problems.append(f"{action.table}.{c}: the planned column is missing")
                    elif n:
                        ok = False
                        result.problems.append(
                            f"{action.table}.{c}: {n} values are not pseudonymized; run the erase task again"
                        )
            entry["ok"] = ok
        if touched:  # PostgreSQL counts the dead tuples; other databases cannot tell
            dialect_for(engine).check_dead_rows(conn, touched, result)
    actions = {a.table: a for a in plan.tables}
    skipped = set(not_personal)
    for (table, column), count in sorted(hits.items()):
        if (table, column) in skipped:
            continue
        action = actions.get(table)
        if action is not None and left_on_purpose(action, column):
            result.notes.append(
                f"{table}.{column}: {count} personal values in rows the plan keeps on purpose "
                f"({action.reason})"
            )
            continue
        result.problems.append(f"{table}.{column}: the full scan still finds {count} personal values")
    result.ok = not result.problems
    log.info("verification of %s: ok=%s, %d problem(s)", plan.source_id, result.ok, len(result.problems))
    return result
