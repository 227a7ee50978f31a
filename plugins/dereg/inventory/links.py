"""How every table's rows belong to the data subjects: declared foreign keys, links inferred from
column names and confirmed by values on the server, and the manifest's `links:` (added or rejected).

A link is inferred for a column whose name says it holds the key of another table that has a
single-column primary key (`names.py`: `<stem>_id`, `<stem>Id`, `<stem>_<key>`, the key's own name,
pinyin and Chinese; for the subject table also person roles such as `creator_id`, `fromId`, `uid`),
then confirmed by ONE bounded query on the server: of at most `SAMPLE_LIMIT` non-null values, the
share that are keys of the referenced table (`containment`), accepted at `CONTAINMENT` or more with
at least one match. Everything read is a count; no value leaves the server. `link_report` also keeps
the candidates that values (or the manifest) turned down, for `dereg init` and the reports.
`subject_paths` gives, for every table tied to the subject table, the shortest chain of links.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from dereg.errors import LinkError
from dereg.inventory.names import key_words, module_prefixes, role_of, table_stems, words
from dereg.model import Link, SourceInventory, TableInfo

log = logging.getLogger(__name__)

#: an inferred (or manifest) link holds when at least this share of its values are keys
CONTAINMENT = 0.9
#: the most non-null values one check reads (LIMIT on the server)
SAMPLE_LIMIT = 10_000
#: a check whose types differ (text against integer keys) compares as text, which no index
#: serves: skipped when the referenced table has more rows than this
CAST_ROWS_LIMIT = 200_000

_RULE_ORDER = {"<stem>_id": 0, "<stem>_<key>": 0, "<key>": 1, "role": 2}


@dataclass
class LinkCandidate:
    """A link that names suggested, with its verdict: `accepted`, `reason` in words (names and
    figures only) and `decided_by`: "values", "unchecked" (the check could not run: an unreadable
    table, types that cannot match) or "manifest" (a rejection, or a manifest link replacing it)."""

    link: Link
    accepted: bool
    reason: str
    decided_by: str = "values"

    def to_dict(self) -> dict[str, Any]:
        return {
            "link": self.link.describe(),
            "evidence": dict(self.link.evidence),
            "accepted": self.accepted,
            "reason": self.reason,
            "decided_by": self.decided_by,
        }


@dataclass
class LinkReport:
    """What `link_report` found: the links, and every candidate with its verdict."""

    links: list[Link] = field(default_factory=list)
    candidates: list[LinkCandidate] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for link in self.links if link.kind == kind)

    @property
    def rejected_by_values(self) -> list[LinkCandidate]:
        return [c for c in self.candidates if not c.accepted and c.decided_by == "values"]

    @property
    def unchecked(self) -> list[LinkCandidate]:
        return [c for c in self.candidates if c.decided_by == "unchecked"]

    @property
    def rejected_by_manifest(self) -> list[LinkCandidate]:
        return [c for c in self.candidates if not c.accepted and c.decided_by == "manifest"]

    def summary(self) -> str:
        """`N declared, N inferred, N from the manifest; N rejected by values, N by the manifest`."""
        return (
            f"{self.count('declared')} declared, {self.count('inferred')} inferred, "
            f"{self.count('manifest')} from the manifest; {len(self.rejected_by_values)} candidate(s) "
            f"rejected by values, {len(self.rejected_by_manifest)} by the manifest"
            + (f", {len(self.unchecked)} not checked" if self.unchecked else "")
        )


# ---- declared ---------------------------------------------------------------------------------


def declared_links(inventory: SourceInventory) -> list[Link]:
    """Every declared foreign key as a Link (kind "declared"). A partitioned table also gets the
    foreign keys its partitions declare (PostgreSQL lets each partition have its own): evidence
    {"partitions": [...]}, `on_delete` when the partitions agree. A partition's own links stay on
    the partition; the plan treats a partition's rows as its parent's (`TableInfo.partition_of`)."""
    links = [
        Link(
            table=t.qualified_name,
            columns=list(fk.columns),
            ref_table=fk.ref_qualified_name,
            ref_columns=list(fk.ref_columns),
            kind="declared",
            evidence={"constraint": fk.name} if fk.name else {},
            on_delete=fk.on_delete,
        )
        for t in inventory.tables
        for fk in t.foreign_keys
    ]
    own = {(link.table, tuple(link.columns), link.ref_table) for link in links}
    inherited: dict[tuple, list[Link]] = {}
    for link in links:
        parent = inventory.table(link.table).partition_of
        if parent and (parent, tuple(link.columns), link.ref_table) not in own:
            inherited.setdefault(
                (parent, tuple(link.columns), link.ref_table, tuple(link.ref_columns)), []
            ).append(link)
    for (parent, columns, ref_table, ref_columns), found in sorted(inherited.items()):
        rules = {link.on_delete for link in found}
        evidence: dict[str, Any] = {"partitions": sorted(link.table for link in found)}
        if len(rules) > 1:
            evidence["on_delete_by_partition"] = {link.table: link.on_delete for link in found}
        links.append(
            Link(
                table=parent,
                columns=list(columns),
                ref_table=ref_table,
                ref_columns=list(ref_columns),
                kind="declared",
                evidence=evidence,
                on_delete=found[0].on_delete if len(rules) == 1 else None,
            )
        )
    return links


# ---- inferred ---------------------------------------------------------------------------------


def _family(type_text: str) -> str | None:
    """ "int", "text" or "uuid" for a type a key can have; None for the rest (dates, floats, ...)."""
    t = type_text.upper().strip()
    if t.startswith(("TINYINT", "SMALLINT", "MEDIUMINT", "BIGINT", "INT", "SERIAL", "BIGSERIAL")):
        return "int" if not t.startswith("INTERVAL") else None
    if t.startswith(("NUMERIC", "DECIMAL", "NUMBER")) and (t.endswith(",0)") or t.endswith(", 0)")):
        return "int"
    if "CHAR" in t or "TEXT" in t or t.startswith("STRING"):
        return "text"
    if t.startswith("UUID"):
        return "uuid"
    return None


def _column(table: TableInfo, name: str):
    return next((c for c in table.columns if c.name == name), None)


@dataclass(frozen=True)
class _Target:
    table: TableInfo
    key: str
    rule: str
    stem: tuple[str, ...]


def _targets(inventory: SourceInventory) -> dict[tuple[str, ...], list[_Target]]:
    """Column words -> the tables a column of that name may refer to, with the rule."""
    readable = [
        t
        for t in inventory.tables
        if len(t.primary_key) == 1
        and not t.partition_of
        and not t.problem
        and _family(_column(t, t.primary_key[0]).type if _column(t, t.primary_key[0]) else "") is not None
    ]
    prefixes = module_prefixes(t.name for t in inventory.tables)
    index: dict[tuple[str, ...], list[_Target]] = {}
    for t in readable:
        key = t.primary_key[0]
        key_w = words(key)
        for stem in sorted(table_stems(t.name, prefixes)):
            index.setdefault((*stem, "id"), []).append(_Target(t, key, "<stem>_id", stem))
            if key_w != ("id",) and key_w[: len(stem)] != stem:
                index.setdefault((*stem, *key_w), []).append(_Target(t, key, "<stem>_<key>", stem))
        if len(key_w) >= 2:
            index.setdefault(key_w, []).append(_Target(t, key, "<key>", key_w))
    return index


def _candidates_for(table: TableInfo, column: str, index: dict, subject: TableInfo | None) -> list[_Target]:
    best: dict[str, _Target] = {}  # one check per referenced table, under its strongest rule
    readings = [words(column)] + [(*what, key) for what, key in key_words(column)]
    for reading in dict.fromkeys(readings):
        for target in index.get(reading, []):
            if target.table is table and column == target.key:
                continue  # a table's own key
            name = target.table.qualified_name
            if name not in best or _RULE_ORDER[target.rule] < _RULE_ORDER[best[name].rule]:
                best[name] = target
    found = list(best.values())
    if any(t.rule != "<key>" for t in found):
        # a table named by the column wins over one whose key merely has the column's name (a
        # profile table keyed by user_id is not what every user_id refers to)
        found = [t for t in found if t.rule != "<key>"]
    if subject is not None and len(subject.primary_key) == 1 and not any(t.table is subject for t in found):
        role = role_of(column)
        if role and not (table is subject and column == subject.primary_key[0]):
            found.append(_Target(subject, subject.primary_key[0], "role", role))
    return found


def _rule_text(target: _Target) -> str:
    stem = "_".join(target.stem)
    if target.rule == "role":
        return f"role: {stem} of the subject table {target.table.qualified_name}"
    if target.rule == "<key>":
        return f"<key>: named as the key of {target.table.qualified_name}"
    return f"{target.rule}: stem {stem} of {target.table.qualified_name}"


def containment(
    conn: sa.Connection,
    inventory: SourceInventory,
    table: str,
    columns: list[str],
    ref_table: str,
    ref_columns: list[str],
    *,
    limit: int = SAMPLE_LIMIT,
) -> tuple[int, int]:
    """(non_null, matched): of at most `limit` rows of `table` whose `columns` are all set, how
    many are keys of `ref_table(ref_columns)`. One query; counts only. Columns of different type
    families (text against integers) are compared as text."""
    t_info, r_info = inventory.table(table), inventory.table(ref_table)
    src = sa.table(t_info.name, *[sa.column(c) for c in columns], schema=t_info.schema)
    ref = sa.table(r_info.name, *[sa.column(c) for c in ref_columns], schema=r_info.schema).alias("r")
    sample = (
        sa.select(*[src.c[c].label(f"v{i}") for i, c in enumerate(columns)])
        .where(*[src.c[c].is_not(None) for c in columns])
        .limit(limit)
        .subquery("s")
    )
    conditions = []
    for i, (c, rc) in enumerate(zip(columns, ref_columns, strict=True)):
        left, right = ref.c[rc], sample.c[f"v{i}"]
        if _family(_column(t_info, c).type) != _family(_column(r_info, rc).type):
            left, right = sa.cast(left, sa.String()), sa.cast(right, sa.String())
        conditions.append(left == right)
    hit = sa.exists(sa.select(sa.literal(1)).select_from(ref).where(*conditions))
    query = sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((hit, 1), else_=0)), 0)
    ).select_from(sample)
    non_null, matched = conn.execute(query).one()
    return int(non_null), int(matched)


def _verdict(non_null: int, matched: int) -> tuple[bool, str]:
    if non_null == 0:
        return (
            False,
            "the column holds no values: nothing confirms the link (add it under links: if it is one)",
        )
    share = matched / non_null
    if matched and share >= CONTAINMENT:
        return True, f"{matched} of {non_null} values are keys (containment {share:.3f} >= {CONTAINMENT})"
    return (
        False,
        f"values are not its keys: {matched} of {non_null} (containment {share:.3f} < {CONTAINMENT})",
    )


def _evidence(rule: str, non_null: int, matched: int) -> dict[str, Any]:
    return {
        "rule": rule,
        "non_null": non_null,
        "matched": matched,
        "containment": round(matched / non_null, 4) if non_null else 0.0,
    }


def _check(conn, inventory, link: Link, limit: int) -> tuple[int, int] | str:
    """The counts, or why the values could not be checked."""
    t, r = inventory.table(link.table), inventory.table(link.ref_table)
    if t.problem or r.problem:
        return f"not checked: {link.table if t.problem else link.ref_table} cannot be read"
    families = {
        (_family(_column(t, c).type), _family(_column(r, rc).type))
        for c, rc in zip(link.columns, link.ref_columns, strict=True)
    }
    if any(a is None or b is None for a, b in families):
        return "not checked: a column's type cannot hold a key (dates, numbers with decimals, binary)"
    if any(a != b for a, b in families) and r.row_count > CAST_ROWS_LIMIT:
        return (
            f"not checked: types differ (compared as text, without an index) and {link.ref_table} "
            f"has more than {CAST_ROWS_LIMIT} rows"
        )
    try:
        return containment(
            conn, inventory, link.table, link.columns, link.ref_table, link.ref_columns, limit=limit
        )
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise
        conn.rollback()
        return f"not checked: the server refused the query ({type(exc).__name__})"


def _infer(
    conn, inventory: SourceInventory, covered: set, subject: TableInfo | None, limit: int, report: LinkReport
):
    index = _targets(inventory)
    for table in inventory.tables:
        for col in table.columns:
            if (table.qualified_name, (col.name,)) in covered or _family(col.type) is None:
                continue
            tried: list[tuple[Link, bool, str, _Target]] = []
            for target in _candidates_for(table, col.name, index, subject):
                link = Link(
                    table.qualified_name, [col.name], target.table.qualified_name, [target.key], "inferred"
                )
                counts = _check(conn, inventory, link, limit)
                if isinstance(counts, str):
                    link.evidence = {"rule": _rule_text(target)}
                    tried.append((link, False, counts, target))
                    continue
                link.evidence = _evidence(_rule_text(target), *counts)
                tried.append((link, *_verdict(*counts), target))
            accepted = sorted(
                (x for x in tried if x[1]),
                key=lambda x: (-x[0].evidence["containment"], _RULE_ORDER[x[3].rule], x[0].ref_table),
            )
            for link, ok, reason, _ in tried:
                if reason.startswith("not checked"):
                    report.candidates.append(LinkCandidate(link, False, reason, "unchecked"))
                elif ok and link is accepted[0][0]:
                    report.links.append(link)
                    report.candidates.append(LinkCandidate(link, True, reason))
                elif ok:
                    report.candidates.append(
                        LinkCandidate(link, False, f"{accepted[0][0].ref_table} fits better ({reason})")
                    )
                else:
                    report.candidates.append(LinkCandidate(link, False, reason))


# ---- the manifest's links: ---------------------------------------------------------------------


def _get(spec: Any, name: str, default: Any = None) -> Any:
    return spec.get(name, default) if isinstance(spec, dict) else getattr(spec, name, default)


def _spec_text(spec: Any) -> str:
    cols = ", ".join(_get(spec, "columns") or [])
    ref = _get(spec, "references")
    return f"links: {_get(spec, 'table')}({cols})" + (f" -> {ref}" if ref else "")


def _table_or_error(inventory: SourceInventory, name: str, spec: Any, role: str) -> TableInfo:
    try:
        return inventory.table(name)
    except KeyError:
        raise LinkError(
            f"source {inventory.source_id}: {_spec_text(spec)}: {role} {name} does not exist; write the "
            "table as inventory shows it (schema.table outside the default schema) or remove the link"
        ) from None


def _columns_or_error(inventory, table: TableInfo, columns: list[str], spec: Any) -> None:
    missing = [c for c in columns if _column(table, c) is None]
    if missing:
        raise LinkError(
            f"source {inventory.source_id}: {_spec_text(spec)}: table {table.qualified_name} has no column "
            f"{', '.join(missing)}; correct the column names or remove the link"
        )


def _manifest_link(conn, inventory: SourceInventory, spec: Any, limit: int) -> Link:
    """The link `spec` adds, checked: tables and columns exist, and values do not contradict it."""
    table = _table_or_error(inventory, _get(spec, "table"), spec, "table")
    columns = list(_get(spec, "columns") or [])
    _columns_or_error(inventory, table, columns, spec)
    ref = _table_or_error(inventory, _get(spec, "references"), spec, "referenced table")
    ref_columns = list(_get(spec, "ref_columns") or []) or list(ref.primary_key)
    if not ref_columns:
        raise LinkError(
            f"source {inventory.source_id}: {_spec_text(spec)}: {ref.qualified_name} has no primary key; "
            "name the referenced columns in ref_columns"
        )
    _columns_or_error(inventory, ref, ref_columns, spec)
    if len(ref_columns) != len(columns):
        raise LinkError(
            f"source {inventory.source_id}: {_spec_text(spec)}: {len(columns)} column(s) against "
            f"{len(ref_columns)} referenced column(s); give as many ref_columns as columns"
        )
    link = Link(
        table.qualified_name,
        columns,
        ref.qualified_name,
        ref_columns,
        "manifest",
        {"reason": _get(spec, "reason")},
    )
    if not _get(spec, "check_values", True):
        link.evidence["values"] = "not checked (check_values: false)"
        return link
    counts = _check(conn, inventory, link, limit)
    if isinstance(counts, str):
        link.evidence["values"] = counts
        return link
    link.evidence.update({k: v for k, v in _evidence("manifest", *counts).items() if k != "rule"})
    ok, reason = _verdict(*counts)
    if not ok and counts[0]:
        raise LinkError(
            f"source {inventory.source_id}: {_spec_text(spec)} is contradicted by the values: {reason}; "
            "check the columns and the referenced table, or, if the link is right (rows whose referenced "
            "row is gone), set check_values: false on it and say so in its reason"
        )
    return link


def _matches(link: Link, spec: Any, inventory: SourceInventory) -> bool:
    table = _table_or_error(inventory, _get(spec, "table"), spec, "table")
    if link.table != table.qualified_name or link.columns != list(_get(spec, "columns") or []):
        return False
    ref = _get(spec, "references")
    if ref and link.ref_table != _table_or_error(inventory, ref, spec, "referenced table").qualified_name:
        return False
    ref_columns = list(_get(spec, "ref_columns") or [])
    return not ref_columns or link.ref_columns == ref_columns


def _apply_manifest(
    conn, inventory: SourceInventory, specs: Sequence, limit: int, report: LinkReport
) -> None:
    for spec in specs:
        if _get(spec, "reject", False):
            dropped = [link for link in report.links if _matches(link, spec, inventory)]
            known = [c for c in report.candidates if _matches(c.link, spec, inventory)]
            if not dropped and not known:
                raise LinkError(
                    f"source {inventory.source_id}: {_spec_text(spec)} rejects a link that inventory did not "
                    "find (neither declared nor inferred); correct table, columns and references, or remove it"
                )
            for link in dropped:
                report.links.remove(link)
                report.candidates = [c for c in report.candidates if c.link is not link]
                report.candidates.append(
                    LinkCandidate(
                        link, False, f"rejected by the manifest: {_get(spec, 'reason')}", "manifest"
                    )
                )
            continue
        link = _manifest_link(conn, inventory, spec, limit)
        replaced = [x for x in report.links if x.table == link.table and x.columns == link.columns]
        for old in replaced:
            if old.kind == "declared":  # the foreign key still acts on deletes
                link.on_delete = old.on_delete
            report.links.remove(old)
            report.candidates = [c for c in report.candidates if c.link is not old]
            report.candidates.append(
                LinkCandidate(old, False, f"replaced by the manifest's link to {link.ref_table}", "manifest")
            )
        report.links.append(link)


# ---- entry points ------------------------------------------------------------------------------


def link_report(
    engine: sa.Engine,
    inventory: SourceInventory,
    *,
    subject_table: str | None = None,
    specs: Sequence = (),
    limit: int = SAMPLE_LIMIT,
) -> LinkReport:
    """Declared links, inferred links (checked on `engine`, one query per candidate) and the
    manifest's `specs`, with every candidate's verdict. Raises LinkError for a manifest link to a
    missing table or column, a manifest link its values contradict, or a rejection that matches
    nothing."""
    report = LinkReport(links=declared_links(inventory))
    covered = {(link.table, tuple(link.columns)) for link in report.links}
    subject = None
    if subject_table:
        try:
            subject = inventory.table(subject_table)
        except KeyError:
            subject = None  # preflight and the plan report a missing subject table
    with engine.connect() as conn:
        _infer(conn, inventory, covered, subject, limit, report)
        _apply_manifest(conn, inventory, specs, limit, report)
    report.links.sort(key=lambda link: (link.table, link.columns, link.ref_table))
    return report


def find_links(
    engine: sa.Engine,
    inventory: SourceInventory,
    *,
    subject_table: str | None = None,
    specs: Sequence = (),
) -> list[Link]:
    """The links of `inventory`'s tables: declared, inferred (checked on `engine`) and the manifest's
    `specs` (`LinkSpec`s: added, or rejected with `reject: true`). See `link_report` for the
    candidates values turned down."""
    return link_report(engine, inventory, subject_table=subject_table, specs=specs).links


# ---- chains ------------------------------------------------------------------------------------


@dataclass
class SubjectPaths:
    """How tables are tied to the subject table.

    `linked`: tables whose rows refer, through a chain of links, to subject rows (order_item ->
    order -> member); each maps to the shortest chain, from the table to the subject table.
    `referenced`: tables the subject table's own columns refer to (customer.address_id -> address),
    one hop, each with that link; whether their rows are the subject's (an address) or shared
    business rows (a store) is the plan's decision."""

    subject: str
    linked: dict[str, list[Link]] = field(default_factory=dict)
    referenced: dict[str, list[Link]] = field(default_factory=dict)

    def direction(self, table: str) -> str | None:
        """ "linked", "referenced" or None."""
        return "linked" if table in self.linked else "referenced" if table in self.referenced else None


def subject_paths(inventory: SourceInventory, subject_table: str) -> SubjectPaths:
    """For every table tied to `subject_table` by `inventory.links`, the shortest chain (breadth
    first; among chains of one length the first by table and column names)."""
    subject = inventory.table(subject_table).qualified_name
    links = sorted(
        (link for link in inventory.links if link.table != link.ref_table),
        key=lambda link: (link.table, link.columns, link.ref_table, link.ref_columns),
    )
    paths = SubjectPaths(subject=subject)
    into: dict[str, list[Link]] = {}
    for link in links:
        into.setdefault(link.ref_table, []).append(link)
    queue = deque([subject])
    chains: dict[str, list[Link]] = {subject: []}
    while queue:
        current = queue.popleft()
        for link in into.get(current, []):
            if link.table not in chains:
                chains[link.table] = [link, *chains[current]]
                queue.append(link.table)
    paths.linked = {t: chain for t, chain in sorted(chains.items()) if t != subject}
    for link in links:
        if link.table == subject and link.ref_table not in paths.referenced:
            paths.referenced[link.ref_table] = [link]
    return paths


def one_to_one(link: Link, inventory: SourceInventory) -> bool:
    """True when each referenced row has at most one row of `link.table`: its columns are the
    table's primary key or one of its unique keys (a profile table per user)."""
    table = inventory.table(link.table)
    keys = [table.primary_key, *table.unique_keys]
    return any(key and sorted(key) == sorted(link.columns) for key in keys)
