"""The erasure plan: per table, which rows are deleted, pseudonymized or kept; with row counts and a hash.

The plan works per subject row. The subject table's rows all go. A table whose rows refer, through a
chain of links (declared foreign keys, inferred or manifest links: `SourceInventory.links`), to the
subject table loses the rows so linked (scope "linked"; rows with a NULL or unmatched link stay), or
has their personal columns pseudonymized when the law keeps it (`retain`). A table the subject rows
refer to (customer.address_id -> address) that holds personal columns: the referenced rows are
deleted when only the subjects refer to the table, else pseudonymized in place (they may be shared
with staff or stores). A table with personal columns but no link to the subjects is never deleted
whole by default: it is listed under `undecided` until the manifest's `decisions:` erase or
pseudonymize it (every row), or its overrides make the columns non-personal; a real run stops here.

Kept records are never lost: a partition follows its partitioned table's rule (the parent holds no
rows and is not acted on), and a row kept (retained, pseudonymized or untouched) that refers by a
declared foreign key to a row the plan would delete makes that row pseudonymized instead, however
far up the chain (the database would refuse the delete, or cascade it into the kept table). The
erase stage checks the server's foreign keys again before it changes anything.

Tables are ordered so that each comes before every table its selection reads (`via`) and children
before parents. The approver approves the plan's hash; the erase stage runs only the plan with that
hash. Tables are schema-qualified throughout: each action names its table as shown (`schema.table`,
or the bare name in the source's default schema) and carries its `schema` and bare `name`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dereg.errors import ErasureError
from dereg.evidence.artifacts import canonical_json
from dereg.manifest.models import RETAIN_ACTIONS as MANIFEST_RETAIN_ACTIONS
from dereg.model import ClassificationResult, Link, SourceInventory

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
    #: further chains to the subject table, each like `via` (messages.from_id and messages.to_id):
    #: a row is taken when any chain (`via` or one of these) reaches the subjects
    via_also: list[list[dict[str, Any]]] = field(default_factory=list)
    #: the links that tie the table to the subjects, for the approver: [{"link": Link.describe(),
    #: "kind": "declared" | "inferred" | "manifest", "evidence": {...}}]
    links: list[dict[str, Any]] = field(default_factory=list)
    rows_total: int = 0
    #: the partitioned table this partition belongs to (its rule is the parent's), else None
    partition_of: str | None = None
    #: the manifest's decision on this table (`decisions:`: erase, pseudonymize, keep), else None
    decided: str | None = None
    #: a partitioned table: its rows live in its partitions, which are acted on and counted; the
    #: parent itself is never acted on (action "keep", rows 0)
    partitioned: bool = False
    #: delete without a primary key: one statement instead of resumable batches
    one_statement: bool = False

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
        """What the approver reads: per table the rows to delete / pseudonymize / keep and the link
        that ties it to the subjects; the undecided personal data (names and counts only)."""
        by = {a: [t for t in self.tables if t.action == a] for a in ACTIONS}
        return {
            "counts": {a: len(by[a]) for a in ACTIONS},
            "tables": {a: [t.table for t in by[a]] for a in ACTIONS},
            "delete": {t.table: t.rows for t in by["delete"]},
            "pseudonymize": {t.table: {"rows": t.rows, "columns": t.columns} for t in by["pseudonymize"]},
            "keep": [t.table for t in by["keep"]],
            "rows_to_delete": sum(t.rows for t in by["delete"]),
            "rows_to_pseudonymize": sum(t.rows for t in by["pseudonymize"]),
            "rows_kept": sum(rows_kept(t) for t in self.tables),
            "per_table": [
                {
                    "table": t.table,
                    "action": t.action,
                    "scope": t.scope,
                    "delete": t.rows if t.action == "delete" else 0,
                    "pseudonymize": t.rows if t.action == "pseudonymize" else 0,
                    "keep": rows_kept(t),
                    "columns": list(t.columns),
                    "link": " ; ".join(f"{x['link']} ({x['kind']})" for x in t.links),
                    "reason": t.reason,
                }
                for t in self.tables
            ],
            "undecided": list(self.undecided),
            "plan_hash": self.plan_hash,
        }


def referenced_first(action: TableAction) -> bool:
    """A delete of rows the subjects refer to (a guardian): it runs after the subjects' own rows
    are deleted (their foreign keys point at it), so its keys are collected before anything changes."""
    return action.action == "delete" and bool(action.via) and action.via[0].get("direction") == "referenced"


def rows_kept(action: TableAction) -> int:
    """Rows of the table that stay after the plan runs (pseudonymized rows stay)."""
    if action.partitioned:
        return 0
    if action.action == "delete":
        return max(action.rows_total - action.rows, 0)
    return action.rows_total


def _children_first(tables: list[str], parents: dict[str, set[str]]) -> list[str]:
    """Order so that every table comes before the tables it depends on (self-references ignored)."""
    remaining = set(tables)
    ordered: list[str] = []
    while remaining:
        # a table can go once nothing still remaining depends on it
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


def _plan_links(inventory: SourceInventory, names: set[str]) -> list[Link]:
    """The links the plan follows: the inventory's (declared foreign keys when it has none), those of
    a partitioned table also given to each of its partitions, self-references and links to tables
    outside the source left out. Sorted, so the plan does not depend on their order."""
    from dereg.inventory.links import declared_links

    found = list(inventory.links) or declared_links(inventory)
    partitions: dict[str, list[str]] = {}
    for t in inventory.tables:
        if t.partition_of:
            partitions.setdefault(t.partition_of, []).append(t.qualified_name)
    have = {(x.table, tuple(x.columns), x.ref_table) for x in found}
    for link in list(found):
        for part in partitions.get(link.table, []):
            if (part, tuple(link.columns), link.ref_table) not in have:
                found.append(
                    Link(
                        part,
                        list(link.columns),
                        link.ref_table,
                        list(link.ref_columns),
                        link.kind,
                        {**link.evidence, "from_partitioned_table": link.table},
                        link.on_delete,
                    )
                )
    kept = [x for x in found if x.table in names and x.ref_table in names and x.table != x.ref_table]
    return sorted(kept, key=lambda x: (x.table, x.columns, x.ref_table, x.ref_columns, x.kind))


def _hop(link: Link, tables: Mapping[str, Any], *, referenced: bool = False) -> dict[str, Any]:
    """One step of a `via` chain. Child direction: link.table's rows whose (link.columns) are IN
    (SELECT link.ref_columns FROM link.ref_table ...). `referenced`: the reverse, link.ref_table's
    rows whose (ref_columns) are IN (SELECT columns FROM link.table ...)."""
    target = link.table if referenced else link.ref_table
    info = tables[target]
    return {
        "columns": list(link.ref_columns if referenced else link.columns),
        "table": target,
        "schema": info.schema,
        "name": info.name,
        "ref_columns": list(link.columns if referenced else link.ref_columns),
        **({"direction": "referenced"} if referenced else {}),
    }


_TEXT_TYPES = (
    "CHAR",
    "VARCHAR",
    "NCHAR",
    "NVARCHAR",
    "CHARACTER",
    "TEXT",
    "TINYTEXT",
    "MEDIUMTEXT",
    "LONGTEXT",
    "CLOB",
    "STRING",
    "CITEXT",
)


def _holds_token(column: Any) -> bool:
    """Whether a column (as inventory saw it) can hold a pseudonym token (8+ characters of text)."""
    kind = (column.type or "").upper().split("(")[0].strip()
    if kind not in _TEXT_TYPES and not kind.startswith("CHARACTER"):
        return False
    return column.max_length is None or column.max_length >= 8


def _shown(link: Link) -> dict[str, Any]:
    return {
        "link": link.describe(),
        "kind": link.kind,
        "evidence": dict(link.evidence),
        "on_delete": link.on_delete,
    }


def undecided_error(source_id: str, undecided: list[dict[str, Any]]) -> ErasureError:
    """The error a real run stops with while personal data is not linked and not decided."""
    lines = [
        f"  - {u['table']} ({u['rows']} rows): "
        + ", ".join(f"{c} [{', '.join(cats)}]" for c, cats in u["columns"].items())
        for u in undecided
    ]
    return ErasureError(
        f"source {source_id}: {len(undecided)} table(s) hold personal data but no link to the subjects, "
        "and the manifest has not decided what to do with them:\n"
        + "\n".join(lines)
        + "\nThe plan never deletes such a table whole by default. For each, add to the source in the "
        "manifest one of: `decisions: [{table: T, action: erase, reason: ...}]` (delete every row), "
        "`decisions: [{table: T, action: pseudonymize, reason: ...}]` (replace its personal columns), "
        "`decisions: [{table: T, action: keep, reason: ...}]` (its personal data is not the customers': "
        "staff, the company's own contacts), "
        "`classify.overrides: [{table: T, column: C, personal: false, reason: ...}]` (the column is "
        "not personal data), or `links:` (its rows do belong to the subjects); then plan again. A dry "
        "run shows this list without stopping."
    )


def build_plan(
    *,
    company_id: str,
    inventory: SourceInventory,
    classification: ClassificationResult,
    subject_table: str,
    retain: list[RetainRule],
    keep_unreadable: Mapping[str, str] | None = None,
    decisions: Mapping[str, tuple[str, str]] | None = None,
    allow_undecided: bool = False,
) -> ErasurePlan:
    """The plan for one source; see the module docstring for the rules. Deterministic for equal inputs.

    `decisions`: table -> (action "erase" | "pseudonymize", the manifest's reason), for tables with
    personal data and no link to the subjects. Personal data left undecided raises `ErasureError`
    naming every such table and how to decide it, unless `allow_undecided` (a dry run): the plan
    then lists it under `undecided` and keeps the table as it is.

    Rows of a linked table (scope "linked") are counted here as the table's rows; `count_selected`
    (`dereg.erase.selection`) counts the rows the selection takes, on the server.

    A table that could not be read (inventory or classification problem) may hold personal data
    nobody saw: unless the plan deletes it anyway, the plan fails naming it, or `keep_unreadable`
    (table -> the manifest's reason) keeps it with that reason."""
    keep_unreadable = dict(keep_unreadable or {})
    decisions = dict(decisions or {})
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
    bad = sorted(t for t in decisions if t not in names)
    if bad:
        raise ErasureError(
            f"source {inventory.source_id}: decisions name tables that do not exist: {bad}; fix the "
            "manifest's decisions list"
        )
    bad = sorted(
        f"{t}: {a!r}" for t, (a, _) in decisions.items() if a not in ("erase", "pseudonymize", "keep")
    )
    if bad:
        raise ErasureError(
            f"source {inventory.source_id}: decisions with unknown actions {bad}; use erase, pseudonymize or keep"
        )
    tables = {t.qualified_name: t for t in sorted(inventory.tables, key=lambda t: t.qualified_name)}
    parent_of = {q: t.partition_of for q, t in tables.items() if t.partition_of in tables}

    def own_or_parent(rules: Mapping[str, Any], q: str) -> Any:
        return rules.get(q) or (rules.get(parent_of[q]) if q in parent_of else None)

    # personal columns in the table's own column order, so the plan does not depend on classification order
    found: dict[str, set[str]] = {}
    for f in classification.columns:
        if f.personal:
            found.setdefault(f.table, set()).add(f.column)
    personal = {q: [c.name for c in t.columns if c.name in found.get(q, set())] for q, t in tables.items()}
    links = _plan_links(inventory, set(tables))

    # child direction: the shortest chain of links from each table to the subject table
    via: dict[str, list[dict[str, Any]]] = {subject_table: []}
    chain: dict[str, list[Link]] = {subject_table: []}
    frontier = {subject_table}
    while frontier:
        reached: set[str] = set()
        for link in links:
            if link.ref_table in frontier and link.table not in via and link.table not in reached:
                via[link.table] = [_hop(link, tables), *via[link.ref_table]]
                chain[link.table] = [link, *chain[link.ref_table]]
                reached.add(link.table)
        frontier = reached
    # every other link of a linked table to a linked table is a chain too (from_id and to_id);
    # not one that comes back through the table itself
    also: dict[str, list[tuple[list[dict[str, Any]], list[Link]]]] = {}
    for link in links:
        q = link.table
        if q == subject_table or q not in via or link.ref_table not in via or chain[q][0] is link:
            continue
        if q in {h["table"] for h in via[link.ref_table]}:
            continue
        also.setdefault(q, []).append(
            ([_hop(link, tables), *via[link.ref_table]], [link, *chain[link.ref_table]])
        )

    decided = {}
    for q in tables:
        d = own_or_parent(decisions, q)
        if d is not None:
            decided[q] = d
    clash = sorted(q for q in decisions if q in via)
    if clash:
        raise ErasureError(
            f"source {inventory.source_id}: decisions name tables linked to the subjects {clash} ("
            + "; ".join(" -> ".join(x.describe() for x in chain[q]) or "the subject table" for q in clash)
            + "); their linked rows are erased by the plan already. Remove those decisions, or reject "
            "the link in the manifest's links: with a reason"
        )

    actions: dict[str, TableAction] = {}

    def act(q: str, action: str, reason: str, scope: str = "all", hops=(), shown=()) -> TableAction:
        t = tables[q]
        cols = personal[q] if action == "pseudonymize" else ([] if action == "keep" else personal[q])
        made = TableAction(
            q,
            action,
            t.row_count,
            list(cols),
            list(t.primary_key),
            reason,
            {c.name: c.max_length for c in t.columns if c.name in cols} if action == "pseudonymize" else {},
            schema=t.schema,
            name=t.name,
            scope=scope,
            via=[dict(h) for h in hops],
            via_also=[[dict(h) for h in alt] for alt, _ in (also.get(q, []) if hops else [])],
            links=[_shown(x) for x in shown]
            + [_shown(x) for _, more in (also.get(q, []) if hops else []) for x in more if x not in shown],
            rows_total=t.row_count,
            partition_of=parent_of.get(q),
            partitioned=t.partitioned,
        )
        actions[q] = made
        return made

    undecided: list[dict[str, Any]] = []
    subject_refs = [x for x in links if x.table == subject_table]
    for q, t in tables.items():
        rule = own_or_parent(retained, q)
        if t.partitioned:
            act(q, "keep", "partitioned table: its rows live in its partitions, which carry its rule")
            actions[q].rows = actions[q].rows_total = 0
            continue
        if q == subject_table:
            act(q, "delete", "the customers (subject table)")
            continue
        linked = q in via
        scope = "linked" if linked else "all"
        hops, shown = (via[q], chain[q]) if linked else ((), ())
        path = " ; or ".join(
            " -> ".join(x.describe() for x in c) for c in [chain.get(q, []), *[m for _, m in also.get(q, [])]]
        )
        if rule is not None:
            law = f"kept {rule.years} years by {rule.law}"
            whose = "the rows linked to the customers" if linked else "every row"
            if personal[q] and rule.action == "pseudonymize":
                act(
                    q,
                    "pseudonymize",
                    f"{law}; personal columns of {whose} replaced by keyed-hash tokens",
                    scope,
                    hops,
                    shown,
                )
            else:
                why = law + (
                    " with its personal columns as they are (retain action keep)" if personal[q] else ""
                )
                act(q, "keep", why, scope, hops, shown)
            continue
        if linked:
            act(q, "delete", f"rows linked to the customers through {path}", scope, hops, shown)
            continue
        refs = [x for x in subject_refs if x.ref_table == q]
        if refs and personal[q]:
            link = refs[0]
            others = sorted({x.table for x in links if x.ref_table == q and x.table != subject_table})
            hop = _hop(link, tables, referenced=True)
            if others:
                act(
                    q,
                    "pseudonymize",
                    f"rows the customers refer to ({link.describe()}); {', '.join(others)} refer to the table "
                    "too, so the rows may be shared and are pseudonymized in place, not deleted",
                    "linked",
                    [hop],
                    [link],
                )
            else:
                act(
                    q,
                    "delete",
                    f"rows the customers refer to ({link.describe()}), referred to by nothing else",
                    "linked",
                    [hop],
                    [link],
                )
            continue
        if q in decided:
            what, why = decided[q]
            if what == "erase":
                act(q, "delete", f"the manifest decides: erase every row ({why})")
            elif what == "keep":
                act(
                    q,
                    "keep",
                    f"the manifest decides: kept as it is, its personal data is not the customers' ({why})",
                )
                actions[q].decided = "keep"
            else:
                act(q, "pseudonymize", f"the manifest decides: pseudonymize every row ({why})")
            continue
        if personal[q]:
            categories = {f.column: list(f.categories) for f in classification.personal_columns(q)}
            undecided.append(
                {"table": q, "columns": {c: categories.get(c, []) for c in personal[q]}, "rows": t.row_count}
            )
            act(
                q,
                "keep",
                "personal columns but no link to the customers, and no decision in the manifest (undecided)",
            )
            continue
        if q in keep_unreadable:
            act(q, "keep", f"could not be read; kept as the manifest decides: {keep_unreadable[q]}")
            continue
        act(q, "keep", "no personal columns and no link to the customers")

    # kept rows never lose what they refer to: a declared foreign key from rows that stay to rows the
    # plan would delete turns that delete into pseudonymization, however far up the chain
    changed = True
    while changed:
        changed = False
        for link in links:
            if link.kind != "declared":
                continue
            a, b = actions[link.table], actions[link.ref_table]
            if a.partitioned or a.action == "delete" or b.action != "delete":
                continue
            b.action = "pseudonymize"
            b.columns = list(personal[b.table])
            b.column_lengths = {c.name: c.max_length for c in tables[b.table].columns if c.name in b.columns}
            b.reason += (
                f"; rows kept in {a.table} refer to it by foreign key ({link.describe()}, ON DELETE "
                f"{link.on_delete or 'NO ACTION'}), so they are pseudonymized instead of deleted"
            )
            changed = True

    _check_unreadable(
        inventory,
        classification,
        {q: "" for q, a in actions.items() if a.action == "delete"},
        keep_unreadable,
    )
    for a in actions.values():
        if a.action == "pseudonymize" and a.columns and not a.key:
            raise ErasureError(
                f"table {a.table} has no primary key, so its personal columns cannot be pseudonymized in "
                "resumable batches; add a primary key or handle the table by hand"
            )
        if a.action == "delete" and not a.key:
            a.one_statement = True
            a.reason += "; no primary key: deleted in one statement (not in batches)"
    stuck = [
        f"{a.table}.{c.name} ({c.type})"
        for a in actions.values()
        if a.action == "pseudonymize"
        for c in tables[a.table].columns
        if c.name in a.columns and not c.nullable and not _holds_token(c)
    ]
    if stuck:
        raise ErasureError(
            f"source {inventory.source_id}: column(s) {', '.join(stuck)} are to be pseudonymized but can "
            "hold neither a token (text of 8+ characters) nor NULL, so the erase would fail on them. Make "
            "them nullable or text of 8+ characters, or pin them with classify.overrides (personal: "
            "false, with the reason) if they are not personal data; then plan again"
        )
    if undecided and not allow_undecided:
        raise undecided_error(inventory.source_id, undecided)

    # each table before every table its selection reads, and children before parents
    # (rows deleted because the subjects refer to them go after the subjects, as the foreign key
    # wants; erase collects their keys before it changes anything: `referenced_first`)
    deps: dict[str, set[str]] = {}
    for q, a in actions.items():
        deps[q] = set() if referenced_first(a) else {h["table"] for c in [a.via, *a.via_also] for h in c}
    for link in links:
        if link.table not in deps.get(link.ref_table, set()):
            deps[link.table].add(link.ref_table)
    order = _children_first(sorted(actions), deps)
    plan = ErasurePlan(
        company_id=company_id,
        source_id=inventory.source_id,
        dialect=inventory.dialect,
        subject_table=subject_table,
        tables=[actions[n] for n in order],
        undecided=undecided,
    )
    plan.plan_hash = plan.compute_hash()
    return plan
