"""The erasure plan: per table, delete, pseudonymize or keep; with row counts and a hash.

The company is closing, so every customer goes. Deleted: the subject table, every table holding
personal columns that the law does not make us keep, and every table whose rows point (by foreign
key) at a deleted table. Pseudonymized: the personal columns of tables kept by law (accounting
records). Kept: the rest. Tables are ordered children first, so that foreign keys hold after every
batch. The approver approves the plan's hash; the erase stage runs only the plan with that hash.
"""

from __future__ import annotations

import hashlib
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


@dataclass
class ErasurePlan:
    company_id: str
    source_id: str
    dialect: str
    subject_table: str
    tables: list[TableAction]
    plan_hash: str = ""

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
        )

    def compute_hash(self) -> str:
        body = self.to_dict()
        body.pop("plan_hash")
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()

    def action(self, table: str) -> TableAction:
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


def build_plan(
    *,
    company_id: str,
    inventory: SourceInventory,
    classification: ClassificationResult,
    subject_table: str,
    retain: list[RetainRule],
) -> ErasurePlan:
    """The plan for one source; see the module docstring for the rules. Deterministic for equal inputs."""
    names = {t.name for t in inventory.tables}
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
    tables = sorted(inventory.tables, key=lambda t: t.name)
    # personal columns in the table's own column order, so the plan does not depend on classification order
    personal = {
        t.name: [
            c.name for c in t.columns if c.name in {f.column for f in classification.personal_columns(t.name)}
        ]
        for t in tables
    }
    parents = {t.name: {fk.ref_table for fk in t.foreign_keys} - {t.name} for t in tables}

    reasons: dict[str, str] = {subject_table: "the customers (subject table)"}
    for t in tables:
        if t.name not in retained and personal[t.name] and t.name not in reasons:
            reasons[t.name] = "holds personal columns: " + ", ".join(personal[t.name])
    seeds = set(reasons)
    changed = True
    while changed:  # rows pointing at deleted rows go too, however far down the chain
        changed = False
        for t in tables:
            if t.name not in reasons and t.name not in retained and parents[t.name] & set(reasons):
                reasons[t.name] = ""
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
    actions: dict[str, TableAction] = {}
    for t in tables:
        lengths = {c.name: c.max_length for c in t.columns}
        if t.name in reasons:
            actions[t.name] = TableAction(
                t.name, "delete", t.row_count, personal[t.name], list(t.primary_key), reasons[t.name]
            )
        elif t.name in retained and personal[t.name] and retained[t.name].action == "pseudonymize":
            rule = retained[t.name]
            actions[t.name] = TableAction(
                t.name,
                "pseudonymize",
                t.row_count,
                personal[t.name],
                list(t.primary_key),
                f"kept {rule.years} years by {rule.law}; personal columns replaced by keyed-hash tokens",
                {c: lengths.get(c) for c in personal[t.name]},
            )
        else:
            if t.name in retained:
                why = f"kept {retained[t.name].years} years by {retained[t.name].law}"
                if personal[t.name]:
                    why += " with its personal columns as they are (retain action keep)"
            else:
                why = "no personal columns and no link to deleted rows"
            actions[t.name] = TableAction(t.name, "keep", t.row_count, [], list(t.primary_key), why)
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
