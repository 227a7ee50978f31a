"""The erasure plan: per table, delete, pseudonymize or keep; with row counts and a hash.

The company is closing, so every customer goes. Deleted: the subject table, every table holding
personal columns that the law does not make us keep, and every table whose rows point (by foreign
key) at a deleted table. Pseudonymized: the personal columns of tables kept by law (accounting
records). Kept: the rest. Tables are ordered children first, so that foreign keys hold after every
batch. The approver approves the plan's hash; the erase stage runs only the plan with that hash.

Tables are schema-qualified throughout: each action names its table as shown (`schema.table`, or the
bare name in the source's default schema) and carries its `schema` and bare `name`, which is what
erase, purge and verification address; a same-named table in another schema is another table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dereg.errors import ErasureError
from dereg.evidence.artifacts import canonical_json
from dereg.manifest.models import RETAIN_ACTIONS as MANIFEST_RETAIN_ACTIONS
from dereg.model import ClassificationResult, SourceInventory

ACTIONS = ("delete", "pseudonymize", "keep")
#: what a retain rule may ask: the manifest's actions, plus "keep" (personal columns as they are) for
#: callers in code. The manifest does not offer "keep": the plan then lists no personal columns for
#: the table and the certificate would call it "no personal data".
RETAIN_ACTIONS = (*MANIFEST_RETAIN_ACTIONS, "keep")


@dataclass
class RetainRule:
    table: str
    action: str  # one of RETAIN_ACTIONS
    law: str
    years: int


@dataclass
class TableAction:
    table: str
    action: str  # "delete" | "pseudonymize" | "keep"
    rows: int
    columns: list[str]
    key: list[str]
    reason: str
    column_lengths: dict[str, int | None] = field(default_factory=dict)
    #: the table's schema (None: the source's default schema) and its bare name; `table` is
    #: how it is shown (`schema.table`)
    schema: str | None = None
    name: str = ""
    #: which rows the action takes: "all" (every row: the subject table, a table the manifest decided
    #: to erase whole), or "linked": only the rows tied to the subjects through `via`; `rows` counts
    #: the rows acted on, `rows_total` the table's rows at plan time (the rest stay as they are)
    scope: str = "all"
    #: the hops from this table to the subject table, first hop first: each {"columns": [...],
    #: "table": shown name, "schema": ..., "name": bare name, "ref_columns": [...]}. The rows
    #: selected are those whose (columns) are IN (SELECT ref_columns FROM the hop's table WHERE that
    #: table's own selection); the last hop's table is the subject table (all its rows)
    via: list[dict[str, Any]] = field(default_factory=list)
    #: the links that tie the table to the subjects, for the approver: [{"link": Link.describe(),
    #: "kind": "declared" | "inferred" | "manifest", "evidence": {...}}]
    links: list[dict[str, Any]] = field(default_factory=list)
    rows_total: int = 0
    #: the partitioned table this partition belongs to (its rule is the parent's), else None
    partition_of: str | None = None

    @property
    def ident(self) -> tuple[str | None, str]:
        """(schema, bare name): what the statements address."""
        return (self.schema, self.name or self.table)


@dataclass
class ErasurePlan:
    company_id: str
    source_id: str
    dialect: str
    subject_table: str
    tables: list[TableAction]
    plan_hash: str = ""
    #: personal data in tables not linked to the subjects, that the manifest has not decided:
    #: [{"table": ..., "columns": {column: [categories]}, "rows": n}]; a real run stops at plan
    #: while any is left, a dry run shows them
    undecided: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErasurePlan:
        return cls(
            company_id=data["company_id"],
            source_id=data["source_id"],
            dialect=data["dialect"],
            subject_table=data["subject_table"],
            tables=[TableAction(**t) for t in data["tables"]],
            plan_hash=data.get("plan_hash", ""),
            undecided=list(data.get("undecided", [])),
        )

    def compute_hash(self) -> str:
        body = self.to_dict()
        body.pop("plan_hash")
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()

    def action(self, table: str) -> TableAction:
        """The action on the table shown as `table` (`schema.table`, or bare in the default schema)."""
        return next(t for t in self.tables if t.table == table)

    def summary(self) -> dict[str, Any]:
        """What the approver reads: tables and rows per action (names and counts only)."""
        by = {a: [t for t in self.tables if t.action == a] for a in ACTIONS}
        return {
            "counts": {a: len(by[a]) for a in ACTIONS},
            "tables": {a: [t.table for t in by[a]] for a in ACTIONS},
            "delete": {t.table: t.rows for t in by["delete"]},
            "pseudonymize": {t.table: {"rows": t.rows, "columns": t.columns} for t in by["pseudonymize"]},
            "keep": [t.table for t in by["keep"]],
            "rows_to_delete": sum(t.rows for t in by["delete"]),
            "rows_to_pseudonymize": sum(t.rows for t in by["pseudonymize"]),
            "plan_hash": self.plan_hash,
        }


def _children_first(tables: list[str], parents: dict[str, set[str]]) -> list[str]:
    """Order so that every table comes before the tables it references (self-references ignored)."""
    remaining = set(tables)
    ordered: list[str] = []
    while remaining:
        # a table can go once nothing still remaining references it
        ready = sorted(
            t for t in remaining if not any(t in parents.get(o, set()) for o in remaining if o != t)
        )
        if not ready:  # a cycle: break it deterministically
            ready = [sorted(remaining)[0]]
        for t in ready:
            ordered.append(t)
            remaining.discard(t)
    return ordered


def _check_unreadable(
    inventory: SourceInventory,
    classification: ClassificationResult,
    deleted: Mapping[str, str],
    keep_unreadable: Mapping[str, str],
) -> None:
    """Refuse to keep, silently, a table nobody could read: it may hold personal data."""
    why = {t.qualified_name: t.problem for t in inventory.tables if t.problem}
    for p in classification.problems:
        why.setdefault(p.get("table", ""), p.get("reason", ""))
    unknown = sorted(set(keep_unreadable) - {t.qualified_name for t in inventory.tables})
    if unknown:
        raise ErasureError(
            f"source {inventory.source_id}: classify.keep_unreadable names tables that do not exist: "
            f"{unknown}; fix the manifest"
        )
    undecided = sorted(t for t in why if t not in deleted and t not in keep_unreadable)
    if undecided:
        raise ErasureError(
            f"source {inventory.source_id}: table(s) "
            + "; ".join(f"{t} ({why[t]})" for t in undecided)
            + " could not be read, so whether they hold personal data is unknown; the plan will not "
            "keep them silently. Make them readable and classify again, or list each under the "
            "source's classify.keep_unreadable with the reason it may be kept"
        )


def build_plan(
    *,
    company_id: str,
    inventory: SourceInventory,
    classification: ClassificationResult,
    subject_table: str,
    retain: list[RetainRule],
    keep_unreadable: Mapping[str, str] | None = None,
) -> ErasurePlan:
    """The plan for one source; see the module docstring for the rules. Deterministic for equal inputs.

    A table that could not be read (inventory or classification problem) may hold personal data
    nobody saw: unless the plan deletes it anyway, the plan fails naming it, or `keep_unreadable`
    (table -> the manifest's reason) keeps it with that reason."""
    keep_unreadable = dict(keep_unreadable or {})
    names = {t.qualified_name for t in inventory.tables}
    if len(names) != len(inventory.tables):
        shown = [t.qualified_name for t in inventory.tables]
        twice = sorted({n for n in shown if shown.count(n) > 1})
        raise ErasureError(
            f"source {inventory.source_id}: tables {twice} cannot be told apart by name (a table name "
            "containing a dot looks like another schema's table); rename one, then plan again"
        )
    if classification.source_id != inventory.source_id:
        raise ErasureError(
            f"classification is of source {classification.source_id} but the inventory is of "
            f"{inventory.source_id}; re-run classification for {inventory.source_id}"
        )
    bad = [f"{r.table}: {r.action!r}" for r in retain if r.action not in RETAIN_ACTIONS]
    if bad:
        raise ErasureError(
            f"retention rules of source {inventory.source_id} have unknown actions {bad}; "
            f"use one of {list(RETAIN_ACTIONS)} in the manifest's retain list"
        )
    unknown = [r.table for r in retain if r.table not in names]
    if unknown:
        raise ErasureError(
            f"retention rules name tables that do not exist in source {inventory.source_id}: "
            f"{unknown}; fix the manifest's retain list"
        )
    if subject_table not in names:
        raise ErasureError(f"subject table {subject_table!r} does not exist in source {inventory.source_id}")
    retained = {r.table: r for r in retain}
    if subject_table in retained:
        raise ErasureError(
            f"source {inventory.source_id}: the subject table {subject_table} is also in the retain "
            "list; the customers' own rows cannot be both erased and kept. Fix the manifest."
        )
    tables = sorted(inventory.tables, key=lambda t: t.qualified_name)
    # personal columns in the table's own column order, so the plan does not depend on classification order
    personal = {
        t.qualified_name: [
            c.name
            for c in t.columns
            if c.name in {f.column for f in classification.personal_columns(t.qualified_name)}
        ]
        for t in tables
    }
    # by schema-qualified name: `archive.orders` pointing at customers says nothing of `orders`
    parents = {
        t.qualified_name: {fk.ref_qualified_name for fk in t.foreign_keys} - {t.qualified_name}
        for t in tables
    }

    reasons: dict[str, str] = {subject_table: "the customers (subject table)"}
    for t in tables:
        q = t.qualified_name
        if q not in retained and personal[q] and q not in reasons:
            reasons[q] = "holds personal columns: " + ", ".join(personal[q])
    seeds = set(reasons)
    changed = True
    while changed:  # rows pointing at deleted rows go too, however far down the chain
        changed = False
        for t in tables:
            q = t.qualified_name
            if q not in reasons and q not in retained and parents[q] & set(reasons):
                reasons[q] = ""
                changed = True
    for name in set(reasons) - seeds:
        reasons[name] = (
            "rows refer to " + ", ".join(sorted(parents[name] & set(reasons))) + ", which are deleted"
        )
    for name in retained:
        blocking = sorted(parents[name] & set(reasons))
        if blocking:
            raise ErasureError(
                f"table {name} is kept by law but has foreign keys to {blocking}, which are to be "
                "deleted; the database would refuse. Drop or relax those foreign keys first."
            )
    _check_unreadable(inventory, classification, reasons, keep_unreadable)
    actions: dict[str, TableAction] = {}
    for t in tables:
        q = t.qualified_name
        where = {"schema": t.schema, "name": t.name}
        lengths = {c.name: c.max_length for c in t.columns}
        if q in reasons:
            actions[q] = TableAction(
                q, "delete", t.row_count, personal[q], list(t.primary_key), reasons[q], **where
            )
        elif q in retained and personal[q] and retained[q].action == "pseudonymize":
            rule = retained[q]
            actions[q] = TableAction(
                q,
                "pseudonymize",
                t.row_count,
                personal[q],
                list(t.primary_key),
                f"kept {rule.years} years by {rule.law}; personal columns replaced by keyed-hash tokens",
                {c: lengths.get(c) for c in personal[q]},
                **where,
            )
        else:
            if q in retained:
                why = f"kept {retained[q].years} years by {retained[q].law}"
                if personal[q]:
                    why += " with its personal columns as they are (retain action keep)"
            elif q in keep_unreadable:
                why = f"could not be read; kept as the manifest decides: {keep_unreadable[q]}"
            else:
                why = "no personal columns and no link to deleted rows"
            actions[q] = TableAction(q, "keep", t.row_count, [], list(t.primary_key), why, **where)
    for a in actions.values():
        if a.action != "keep" and not a.key:
            raise ErasureError(
                f"table {a.table} has no primary key, so it cannot be erased in resumable batches; "
                "add a primary key or handle the table by hand"
            )
    order = _children_first(sorted(actions), parents)
    plan = ErasurePlan(
        company_id=company_id,
        source_id=inventory.source_id,
        dialect=inventory.dialect,
        subject_table=subject_table,
        tables=[actions[n] for n in order],
    )
    plan.plan_hash = plan.compute_hash()
    return plan
