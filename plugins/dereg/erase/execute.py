"""Run an erasure plan: delete and pseudonymize in batches by primary key, children first.

Each batch is its own transaction, so a crash loses at most the batch in flight, and running the
plan again picks up where it stopped: deleted rows are gone, and pseudonymized values (tokens
starting with `tok_`) are skipped. Tokens are keyed hashes (HMAC-SHA256 with the company's
pseudonym key), so the same person gets the same token across the kept records without the
value being recoverable from the data alone. Statements are built from reflected tables, so
identifiers are quoted by SQLAlchemy and values always travel as bound parameters.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.dialects import dialect_for
from dereg.erase.plan import ErasurePlan, TableAction, referenced_first
from dereg.erase.selection import reflect, selection
from dereg.errors import ErasureError
from dereg.redact import database_error, is_database_error

log = logging.getLogger(__name__)

TOKEN_PREFIX = "tok_"
TOKEN_HEX = 16
TOKEN_LENGTH = len(TOKEN_PREFIX) + TOKEN_HEX  # 20
MIN_TOKEN_LENGTH = 8

Progress = Callable[[str], None]


def token(key: bytes, table: str, column: str, value, length: int | None = None) -> str | None:
    """The pseudonym of `value` in `table.column`; None when the column is too short for a token.

    `length` is the column's maximum length: the token is cut to fit, but never below
    MIN_TOKEN_LENGTH characters (a shorter hash would make collisions likely).
    """
    length = min(TOKEN_LENGTH, length or TOKEN_LENGTH)
    if length < MIN_TOKEN_LENGTH:
        return None
    # HMAC-SHA256(key, "table.column\0value"): the keyed state after the column's prefix is
    # computed once per column and copied for each value (a million tokens per large table)
    mac = _column_mac(key, table, column).copy()
    mac.update(f"{value}".encode())
    return TOKEN_PREFIX + mac.hexdigest()[: length - len(TOKEN_PREFIX)]


@lru_cache(maxsize=256)
def _column_mac(key: bytes, table: str, column: str):
    return hmac.new(key, f"{table}.{column}\0".encode(), hashlib.sha256)


def is_token(value) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


class RowsAppeared(ErasureError):
    """More rows than were checked against the backup: some arrived after the backup."""

    def __init__(self, table: str, expected: int, found: int):
        self.table = table
        super().__init__(
            f"{table}: {found} rows to erase but {expected} were backed up and planned; rows were added "
            "after the backup, and erase stops before touching them (this table's batch was rolled back). "
            "Stop the writers, then run inventory, plan, backup and approval again."
        )


class ContentChanged(ErasureError):
    """A table holds other rows than the backup took (its content hash differs), though as many."""

    def __init__(self, tables: list[str]):
        self.tables = tables
        super().__init__(
            f"{', '.join(tables)}: the content differs from the backup (content hash, checked under the "
            "TRUNCATE lock): rows were changed, or some deleted and others added, after the backup. "
            "Nothing of this transaction was erased. Take a new backup: stop the source's writers, then "
            "run the closure again from the backup stage in a new run, and have the new plan approved."
        )


@dataclass
class _Cursor:
    """Where the run of one table is, so that an error can say which batch failed."""

    table: str
    batch: int = 0
    done: int = 0


def _is_text(column: sa.Column) -> bool:
    return isinstance(column.type, sa.String) and not isinstance(column.type, sa.Enum)


def _delete(
    engine: Engine,
    table: sa.Table,
    action: TableAction,
    batch_size: int,
    report: Progress,
    cursor: _Cursor,
    limit: int | None = None,
    where=None,
) -> int:
    """Delete the selected rows (`where`; None: every row) in batches by primary key: select the
    next keys, delete them, commit; a rerun finds only the rows still selected. With `limit`, a
    batch that would take the total past it is rolled back (rows that arrived after the check were
    never backed up). A table without a primary key goes in one statement."""
    if action.one_statement:
        cursor.batch += 1
        with engine.begin() as conn:
            dialect_for(conn).secure_delete(conn)
            statement = table.delete() if where is None else table.delete().where(where)
            deleted = conn.execute(statement).rowcount
            if limit is not None and deleted > limit:
                raise RowsAppeared(action.table, limit, deleted)
            cursor.done += deleted
        report(f"{action.table}: {cursor.done}/{action.rows} rows deleted (one statement: no primary key)")
        return cursor.done
    key_cols = [table.c[k] for k in action.key]
    while True:
        cursor.batch += 1
        with engine.begin() as conn:
            dialect_for(conn).secure_delete(conn)  # e.g. SQLite zeroes freed cells at once
            query = sa.select(*key_cols)
            if where is not None:
                query = query.where(where)
            keys = [tuple(r) for r in conn.execute(query.order_by(*key_cols).limit(batch_size))]
            if not keys:
                cursor.batch -= 1
                break
            if where is None and len(key_cols) == 1:
                # the first batch_size keys in key order are exactly the keys in [lo, hi]
                chosen = key_cols[0].between(keys[0][0], keys[-1][0])
            elif len(key_cols) == 1:
                chosen = key_cols[0].in_([k[0] for k in keys])
            else:
                chosen = sa.tuple_(*key_cols).in_(keys)
            deleted = conn.execute(table.delete().where(chosen)).rowcount
            if limit is not None and cursor.done + deleted > limit:
                raise RowsAppeared(action.table, limit, cursor.done + deleted)  # rolls this batch back
            cursor.done += deleted
        report(f"{action.table}: {cursor.done}/{action.rows} rows deleted (batch {cursor.batch})")
    return cursor.done


def _pending(table: sa.Table, columns: list[str]):
    """Rows whose planned columns still hold a value that is not a token (or, for non-text, any value)."""
    conditions = []
    for c in columns:
        col = table.c[c]
        if _is_text(col):
            # autoescape: "_" in the prefix must not act as LIKE's one-character wildcard
            conditions.append(
                sa.and_(col.is_not(None), sa.not_(col.startswith(TOKEN_PREFIX, autoescape=True)))
            )
        else:
            conditions.append(col.is_not(None))
    return sa.or_(*conditions)


def _check_columns(table: sa.Table, action: TableAction) -> None:
    missing = [c for c in [*action.key, *action.columns] if c not in table.c]
    if missing:
        raise ErasureError(
            f"table {table.name} has no column(s) {missing} named in the plan; the schema changed "
            "after planning. Re-run inventory, classification and plan, and approve again."
        )
    for c in action.columns:
        col = table.c[c]
        length = getattr(col.type, "length", None) if _is_text(col) else None
        holds_token = _is_text(col) and (length is None or length >= MIN_TOKEN_LENGTH)
        if not holds_token and not col.nullable:
            raise ErasureError(
                f"column {table.name}.{c} ({col.type}) can hold neither a token nor NULL, so it cannot be "
                "pseudonymized; make it nullable or a text column of 8+ characters, then run again"
            )


def _pseudonymize(
    engine: Engine,
    table: sa.Table,
    action: TableAction,
    key: bytes,
    batch_size: int,
    report: Progress,
    cursor: _Cursor,
    where=None,
) -> int:
    if not action.columns:  # rows kept for what refers to them, with no personal column to replace
        report(f"{action.table}: {action.rows} rows kept, no personal column to pseudonymize")
        return 0
    _check_columns(table, action)
    key_cols = [table.c[k] for k in action.key]
    text = {c: _is_text(table.c[c]) for c in action.columns}
    lengths = {
        c: getattr(table.c[c].type, "length", None) or action.column_lengths.get(c) for c in action.columns
    }
    bind_keys = {k: f"k_{i}" for i, k in enumerate(action.key)}
    bind_cols = {c: f"v_{i}" for i, c in enumerate(action.columns)}
    update = (
        table.update()
        .where(sa.and_(*[table.c[k] == sa.bindparam(b) for k, b in bind_keys.items()]))
        .values({c: sa.bindparam(b) for c, b in bind_cols.items()})
    )
    nkeys = len(key_cols)
    last: tuple | None = None
    while True:
        cursor.batch += 1
        query = sa.select(*key_cols, *[table.c[c] for c in action.columns]).where(
            _pending(table, action.columns)
        )
        if where is not None:
            query = query.where(where)
        if last is not None:  # keyset paging: every batch moves forward, even if a row stayed pending
            if nkeys == 1:
                query = query.where(key_cols[0] > last[0])
            else:
                query = query.where(sa.tuple_(*key_cols) > sa.tuple_(*[sa.literal(v) for v in last]))
        with engine.begin() as conn:
            rows = conn.execute(query.order_by(*key_cols).limit(batch_size)).all()
            if not rows:
                cursor.batch -= 1
                break
            params = []
            for row in rows:
                item = {bind_keys[k]: row[i] for i, k in enumerate(action.key)}
                for j, c in enumerate(action.columns):
                    value = row[nkeys + j]
                    if value is None or (text[c] and is_token(value)):
                        item[bind_cols[c]] = value
                    elif text[c]:
                        item[bind_cols[c]] = token(key, action.table, c, value, lengths[c])
                    else:
                        item[bind_cols[c]] = None  # a date or number cannot hold a token
                params.append(item)
            # one statement per row by default; PostgreSQL joins the whole batch in one UPDATE
            dialect_for(conn).batch_update(conn, table, update, bind_keys, bind_cols, params)
            cursor.done += len(rows)
            last = tuple(rows[-1][:nkeys])
        report(f"{action.table}: {cursor.done}/{action.rows} rows pseudonymized (batch {cursor.batch})")
    return cursor.done


def _truncate_whole_tables(
    engine: Engine,
    plan: ErasurePlan,
    report: Progress,
    expected: Mapping[str, int] | None,
    digests: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Where the dialect `truncates` (PostgreSQL): the plan deletes every row of its delete tables,
    so those whose referrers are all deleted too go in one TRUNCATE, one transaction: all or
    nothing, no foreign-key check per row, and the old data files are dropped at once (nothing left
    for VACUUM). Tables are (schema, name) pairs, so a same-named table of another schema is never
    taken for a planned one. With `expected`, the rows counted under the lock must be those
    checked against the backup, and with `digests` (table -> the backup's content hash) each
    table's content hash, computed under the lock by the backup's own reader, must be the
    backup's; else nothing is emptied. Returns rows per table truncated; tables referred to by a
    kept table are left to the batched path."""
    # every row goes: a table deleted whole, or one whose rows were all linked at plan time (the
    # count and content hash under the lock prove they still are the planned rows)
    deleting = {
        t.ident: t.table
        for t in plan.tables
        if t.action == "delete" and (t.scope == "all" or t.rows == t.rows_total)
    }
    dialect = dialect_for(engine)

    with engine.begin() as conn:

        def unchanged(counts: dict) -> None:
            for ident, n in counts.items():
                want = None if expected is None else expected.get(deleting[ident])
                if want is not None and n != want:
                    raise RowsAppeared(deleting[ident], want, n)
            if digests:
                # under the ACCESS EXCLUSIVE lock, in the TRUNCATE's transaction: what is hashed
                # here is exactly what the TRUNCATE removes
                from dereg.backup.archive import table_digests

                checked = [i for i in counts if deleting[i] in digests]
                now = table_digests(conn, checked)
                changed = [deleting[i] for i in checked if now[i][1] != digests[deleting[i]]]
                if changed:
                    raise ContentChanged(changed)

        referrers = dialect.referrers(conn)
        closed = set(deleting)
        changed = True
        while changed:  # drop any table that something outside the set still points at
            changed = False
            for t in sorted(closed, key=lambda i: (i[0] or "", i[1])):
                if referrers.get(t, set()) - closed:
                    closed.discard(t)
                    changed = True
        if not closed:
            return {}
        idents = sorted(closed, key=lambda i: (i[0] or "", i[1]))
        counts = dialect.truncate(conn, idents, before=unchanged)
    names = [deleting[i] for i in idents]
    for i in idents:
        report(
            f"{deleting[i]}: {counts[i]} rows deleted (TRUNCATE of {len(names)} tables in one transaction)"
        )
    return {deleting[i]: counts[i] for i in idents}


class KeptRowsAtRisk(ErasureError):
    """A statement of the plan could remove or change a row that must stay: nothing was changed."""

    def __init__(self, source_id: str, risks: list[str]):
        self.risks = risks
        super().__init__(
            f"erase of {source_id} refuses to start: deleting the planned rows could remove or change "
            "rows that must stay:\n"
            + "\n".join(f"  - {r}" for r in risks)
            + "\nNothing was erased. The database's foreign keys differ from what the plan was built "
            "on: run inventory and plan again (the plan then pseudonymizes the referenced rows instead "
            "of deleting them), or drop or relax those foreign keys, and have the new plan approved."
        )


def kept_row_risks(engine: Engine, plan: ErasurePlan) -> list[str]:
    """Every foreign key on the server, read now, from a table whose rows stay (kept,
    pseudonymized, or not in the plan) to a table the plan deletes rows of, where some of those
    staying rows refer to a row the plan deletes: ON DELETE CASCADE would remove them, SET NULL /
    SET DEFAULT would change them, RESTRICT / NO ACTION would stop the erase half-way. Tables,
    columns, rules and counts, never a value."""
    actions = {t.ident: t for t in plan.tables}
    deleting = {i for i, t in actions.items() if t.action == "delete"}
    if not deleting:
        return []
    risks = []
    metadata = sa.MetaData()
    inspector = sa.inspect(engine)
    with engine.connect() as conn:
        for schema in sorted({i[0] for i in actions}, key=lambda x: x or ""):
            found = inspector.get_multi_foreign_keys(schema=schema)
            for (_, name), fks in sorted(found.items(), key=lambda kv: kv[0][1]):
                referrer = actions.get((schema, name))
                if referrer is not None and (referrer.action == "delete" or referrer.partitioned):
                    continue
                for fk in fks:
                    target = (fk.get("referred_schema"), fk["referred_table"])
                    if target not in deleting and schema is None:
                        target = (None, fk["referred_table"])
                    if target not in deleting or target == (schema, name):
                        continue
                    doomed = actions[target]
                    child = reflect(conn, metadata, schema, name)
                    parent = reflect(conn, metadata, *target)
                    sub = sa.select(*[parent.c[c] for c in fk["referred_columns"]])
                    where = selection(conn, metadata, parent, doomed)
                    if where is not None:
                        sub = sub.where(where)
                    cols = [child.c[c] for c in fk["constrained_columns"]]
                    refer = cols[0].in_(sub) if len(cols) == 1 else sa.tuple_(*cols).in_(sub)
                    n = int(
                        conn.execute(sa.select(sa.func.count()).select_from(child).where(refer)).scalar_one()
                    )
                    if not n:
                        continue
                    rule = ((fk.get("options") or {}).get("ondelete") or "NO ACTION").upper()
                    shown = f"{schema}.{name}" if schema else name
                    what = "not in the plan" if referrer is None else f"planned to {referrer.action}"
                    risks.append(
                        f"{shown} ({what}): {n} rows refer by foreign key ({', '.join(fk['constrained_columns'])}, "
                        f"ON DELETE {rule}) to rows of {doomed.table} that the plan deletes"
                    )
    return risks


def referenced_values(engine: Engine, plan: ErasurePlan) -> dict[str, dict[str, list]]:
    """For each action on rows the subjects refer to (a guardian deleted, an address pseudonymized
    in place): {"columns": its linked columns, "values": the values the subjects refer to
    (references, not personal data)}, read while the subjects' rows are still there. Erase records
    them before it changes anything, so a retry after the subjects are gone still finds the rows
    it deletes (`referenced_first`), and verification checks those rows by these values."""
    found = {}
    metadata = sa.MetaData()
    with engine.connect() as conn:
        for action in plan.tables:
            # pseudonymized ones too: verification checks them by these values
            if action.action == "keep" or not action.via or action.via[0].get("direction") != "referenced":
                continue
            table = reflect(conn, metadata, *action.ident)
            columns = list(action.via[0]["columns"])
            where = selection(conn, metadata, table, action)
            query = sa.select(*[table.c[c] for c in columns]).where(where).distinct()
            found[action.table] = {"columns": columns, "values": [list(r) for r in conn.execute(query)]}
    return found


def among(table: sa.Table, columns: list[str], values: list[tuple]):
    if not values:
        return sa.false()
    if len(columns) == 1:
        return table.c[columns[0]].in_([v[0] for v in values])
    return sa.tuple_(*[table.c[c] for c in columns]).in_(values)


def execute_plan(
    engine: Engine,
    plan: ErasurePlan,
    *,
    pseudonym_key: bytes,
    batch_size: int = 1000,
    progress: Progress | None = None,
    truncate_whole_tables: bool = False,
    expected_rows: Mapping[str, int] | None = None,
    expected_digests: Mapping[str, str] | None = None,
    referenced: Mapping[str, Mapping[str, list]] | None = None,
) -> dict[str, int]:
    """Delete and pseudonymize as planned, children first; returns rows changed per table by this call.

    `referenced`: `referenced_values` as recorded before the first try changed anything; None:
    read now (right on a first try; a retry after the subjects' rows are gone must pass them).

    `expected_rows` (table -> rows there now, as checked against the backup): a delete never takes
    more rows than that, so rows that arrived after the check are not erased (`RowsAppeared`).
    `expected_digests` (table -> the backup's content hash, already checked against the source):
    the tables the TRUNCATE path empties are hashed again under its lock and must still match
    (`ContentChanged`, nothing emptied); the batched tables are not re-hashed (see
    `erase_sources` for the window that leaves).

    Calling it again after a complete run changes nothing (every count 0); after an interrupted run
    it finishes the work, reaching the same end state as an uninterrupted run. With
    `truncate_whole_tables` on PostgreSQL, the delete tables whose referrers are all deleted too go
    in one TRUNCATE transaction (the plan deletes every row of them), the rest in batches.
    """
    if batch_size < 1:
        raise ErasureError(f"batch_size must be at least 1, not {batch_size}")
    if plan.plan_hash and plan.plan_hash != plan.compute_hash():
        raise ErasureError(
            f"the erasure plan of {plan.company_id}/{plan.source_id} does not match its hash "
            f"{plan.plan_hash}: it was changed after it was computed. Re-plan and approve again."
        )
    report = progress or log.info
    risks = kept_row_risks(engine, plan)
    if risks:
        raise KeptRowsAtRisk(plan.source_id, risks)
    metadata = sa.MetaData()
    changed: dict[str, int] = {}
    # rows deleted because the subjects refer to them go after the subjects; which rows they are is
    # read now, before anything changes
    if referenced is None:
        referenced = referenced_values(engine, plan)
    if truncate_whole_tables and dialect_for(engine).truncates:
        try:
            changed.update(_truncate_whole_tables(engine, plan, report, expected_rows, expected_digests))
        except sa.exc.ProgrammingError as exc:  # no TRUNCATE privilege: the batched path still works
            log.warning("TRUNCATE not possible (%s); deleting in batches", type(exc.orig).__name__)
    for action in plan.tables:
        if action.action == "keep" or action.table in changed:
            continue
        if action.action not in ("delete", "pseudonymize"):
            raise ErasureError(
                f"plan of {plan.source_id}: unknown action {action.action!r} for table "
                f"{action.table}; expected delete, pseudonymize or keep"
            )
        cursor = _Cursor(action.table)
        try:
            table = reflect(engine, metadata, *action.ident)
            if referenced_first(action):
                if action.table not in referenced:
                    raise ErasureError(
                        f"{action.table}: the rows the subjects refer to were not recorded before the "
                        "erase began; run the erase task again from its first try's record"
                    )
                held = referenced[action.table]
                where = among(table, list(held["columns"]), [tuple(v) for v in held["values"]])
            else:
                where = selection(engine, metadata, table, action)
            if action.action == "delete":
                if action.scope == "linked":
                    limit = action.rows
                else:
                    limit = None if expected_rows is None else expected_rows.get(action.table)
                changed[action.table] = _delete(
                    engine, table, action, batch_size, report, cursor, limit, where
                )
            else:
                changed[action.table] = _pseudonymize(
                    engine, table, action, pseudonym_key, batch_size, report, cursor, where
                )
        except sa.exc.NoSuchTableError:
            raise ErasureError(
                f"{action.action} of {plan.source_id}.{action.table}: the table does not exist; the "
                "schema changed after planning. Re-run inventory, classification and plan, and "
                "approve again."
            ) from None
        except Exception as exc:
            # SQLAlchemy's errors and the driver's own (raised through a raw cursor by the COPY
            # path): only class and SQLSTATE, as the message may quote the failing row
            if not is_database_error(exc):
                raise
            raise ErasureError(
                f"{action.action} of {plan.source_id}.{action.table} failed in batch {cursor.batch} "
                f"({cursor.done} rows done before it): {database_error(exc)}. Batches already committed "
                "stay done; fix the cause and run the task again to resume."
            ) from None
    return changed
