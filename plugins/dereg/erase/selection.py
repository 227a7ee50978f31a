"""Which rows of a table an erasure plan action takes, as SQL: the one definition that the plan's
counts, the erase and the verification share.

An action of scope "all" takes every row. One of scope "linked" takes the rows whose `via` chain
reaches the subject table: `(columns) IN (SELECT ref_columns FROM hop WHERE <hop's own selection>)`,
hop after hop, the last hop's table (the subject table) with all its rows; with further chains
(`via_also`), the rows any chain reaches. Tables are reflected,
so identifiers are quoted by SQLAlchemy; nothing read from a database or manifest is spliced in.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dereg.erase.plan import ErasurePlan, TableAction
from dereg.errors import ErasureError


def reflect(conn: Connection | Engine, metadata: sa.MetaData, schema: str | None, name: str) -> sa.Table:
    key = f"{schema}.{name}" if schema else name
    if key in metadata.tables:
        return metadata.tables[key]
    return sa.Table(name, metadata, schema=schema, autoload_with=conn)


def _columns(table: sa.Table, names: list[str], where: str) -> list[sa.Column]:
    missing = [c for c in names if c not in table.c]
    if missing:
        raise ErasureError(
            f"{where}: table {table.name} has no column(s) {missing} named by the plan's links; the "
            "schema changed after planning. Re-run inventory, classification and plan, and approve again."
        )
    return [table.c[c] for c in names]


def _in(left: list[sa.Column], sub: sa.Select) -> sa.ColumnElement[bool]:
    if len(left) == 1:
        return left[0].in_(sub)
    return sa.tuple_(*left).in_(sub)


def chain_condition(
    conn: Connection | Engine, metadata: sa.MetaData, table: sa.Table, hops: list[dict[str, Any]], where: str
) -> sa.ColumnElement[bool] | None:
    """The condition on `table` that follows `hops` to the subject table; None: every row."""
    if not hops:
        return None
    hop = hops[0]
    target = reflect(conn, metadata, hop.get("schema"), hop.get("name") or hop["table"])
    sub = sa.select(*_columns(target, list(hop["ref_columns"]), where))
    inner = chain_condition(conn, metadata, target, hops[1:], where)
    if inner is not None:
        sub = sub.where(inner)
    return _in(_columns(table, list(hop["columns"]), where), sub)


def selection(
    conn: Connection | Engine, metadata: sa.MetaData, table: sa.Table, action: TableAction
) -> sa.ColumnElement[bool] | None:
    """The rows `action` takes from `table` (its reflected table); None: every row."""
    if action.scope != "linked":
        return None
    first = chain_condition(conn, metadata, table, action.via, action.table)
    more = [chain_condition(conn, metadata, table, c, action.table) for c in action.via_also]
    return sa.or_(first, *more) if more else first


def count_rows(conn: Connection, table: sa.Table, where=None) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        query = query.where(where)
    return int(conn.execute(query).scalar_one())


def count_selected(engine: Engine, plan: ErasurePlan, *, dry_run: bool = False) -> ErasurePlan:
    """Count, on the server, the rows each linked action takes, into its `rows` (the count erase
    must match), and hash the plan again. Returns the plan. A table the connection's user may not
    read fails a real run's plan, saying so; a dry run notes it in the action's reason."""
    from dereg.redact import database_error

    metadata = sa.MetaData()
    with engine.connect() as conn:
        for action in plan.tables:
            if action.scope != "linked" or action.partitioned:
                continue
            try:
                with conn.begin_nested() if conn.in_transaction() else conn.begin():
                    table = reflect(conn, metadata, *action.ident)
                    action.rows = count_rows(conn, table, selection(conn, metadata, table, action))
            except sa.exc.NoSuchTableError:
                raise ErasureError(
                    f"plan of {plan.source_id}: table {action.table} or a table its link goes through "
                    "does not exist any more; run inventory again"
                ) from None
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise
                why = f"its rows linked to the subjects could not be counted ({database_error(exc)})"
                if not dry_run:
                    raise ErasureError(
                        f"plan of {plan.source_id}: table {action.table}: {why}. Erase could not touch it "
                        "either: grant the connection's user read and write access to it, then plan again"
                    ) from None
                action.reason += f"; {why}"
    plan.plan_hash = plan.compute_hash()
    return plan
