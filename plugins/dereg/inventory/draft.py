"""A draft company manifest for one database: what `dereg init SOURCE_URL` writes.

The database is inventoried, a sample of every table classified and its links found
(`dereg.inventory.links.find_links`); from these the draft proposes the subject table (candidates
ranked by name, rows, personal columns and the tables referring to them), who receives the notices
(an e-mail column of the subject table or of a linked table), the tables that look like accounting
records under `retain:` (the law left for the user to fill in), and lists every personal column of
a table not linked to the subjects as undecided, with the `decisions:` / `classify.overrides`
syntax to decide it. Names and counts only: no value read from the database appears in the draft.
Every placeholder starts with `TODO`, so the draft does not validate until a person has filled it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from dereg.model import ClassificationResult, Link, SourceInventory, TableInfo

#: words naming the people a business serves, in English, pinyin and Chinese (singular)
SUBJECT_WORDS = frozenset(
    {
        "user", "member", "customer", "client", "student", "learner", "pupil", "patient", "buyer",
        "subscriber", "consumer", "guest", "person", "account", "trainee", "shopper", "passenger",
        "yonghu", "huiyuan", "kehu", "xueyuan", "xuesheng", "guke", "chengyuan",
    }
)  # fmt: skip
SUBJECT_WORDS_ZH = ("用户", "会员", "客户", "学员", "学生", "顾客", "患者", "乘客")
#: words naming accounting records (original vouchers the law keeps), English, pinyin, Chinese
ACCOUNTING_WORDS = frozenset(
    {
        "order", "payment", "pay", "invoice", "refund", "bill", "billing", "receipt", "transaction",
        "charge", "settlement", "voucher", "ledger", "dingdan", "zhifu", "fapiao", "tuikuan",
        "zhangdan", "shoukuan",
    }
)  # fmt: skip
ACCOUNTING_WORDS_ZH = ("订单", "支付", "付款", "发票", "退款", "账单", "收款", "交易", "凭证")
CONTACT_CATEGORY = "email"
NAME_CATEGORY = "name"
DEFAULT_SAMPLE_SIZE = 1000
_TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\x00-\x7f]+")


def tokens(name: str) -> list[str]:
    """A table or column name's words, lower-case: `memberId`, `member_id` and `MEMBER_ID` all give
    ["member", "id"]; a run of non-ASCII letters is one word.

    >>> tokens("ums_memberReceiveAddress")
    ['ums', 'member', 'receive', 'address']
    """
    return [t.lower() for t in _TOKEN.findall(name)]


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _name_says(name: str, words: frozenset[str], words_zh: tuple[str, ...]) -> tuple[int, str | None]:
    """(2, word) when the name's last word is one of `words` (or it ends with a Chinese one),
    (1, word) when another of its words is, else (0, None)."""
    parts = [_singular(t) for t in tokens(name)]
    if parts and parts[-1] in words:
        return 2, parts[-1]
    for zh in words_zh:
        if name.endswith(zh):
            return 2, zh
    for part in parts:
        if part in words:
            return 1, part
    for zh in words_zh:
        if zh in name:
            return 1, zh
    return 0, None


@dataclass
class NameReference:
    """A column whose name says it holds another table's key (`member_id` -> `ums_member`); found
    by names alone, not confirmed by values."""

    table: str
    column: str
    ref_table: str
    ref_column: str


@dataclass
class SubjectCandidate:
    table: str
    score: float
    rows: int
    personal_columns: int
    referred_by: int
    name_word: str | None = None

    def describe(self) -> str:
        said = f"name says {self.name_word}; " if self.name_word else ""
        return (
            f"score {self.score:.0f}: {said}{self.rows} rows; {self.personal_columns} personal column(s); "
            f"{self.referred_by} table(s) refer to it"
        )


@dataclass
class Draft:
    """What the draft proposes for one source; `render` writes it as YAML."""

    source_id: str
    where: str
    inventory: SourceInventory
    classification: ClassificationResult
    links: list[Link]
    candidates: list[SubjectCandidate]
    subject_table: str | None
    #: table -> the links that tie it to the subject table (a chain, first hop first)
    linked: dict[str, list[Link]] = field(default_factory=dict)
    #: table -> the link by which the subject table's rows refer to it (their address, or a shared store)
    referenced: dict[str, Link] = field(default_factory=dict)
    #: table -> name references tying it to the subjects, where inventory's links do not
    by_name: dict[str, list[NameReference]] = field(default_factory=dict)
    #: {"table", "email_column", "name_column", "link_column", "share"} or None
    notify: dict[str, str] | None = None
    #: (table, the word that says it is an accounting record)
    retain: list[tuple[str, str]] = field(default_factory=list)
    #: table -> {column: [categories]}: personal data in tables not linked to the subjects
    undecided: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def render(self) -> str:
        return render_draft(self)


# --- reading the database ------------------------------------------------------------------------


def _owner(inventory: SourceInventory) -> dict[str, str]:
    """table -> the table whose rows it holds: a partition's parent, else itself."""
    return {t.qualified_name: t.partition_of or t.qualified_name for t in inventory.tables}


def name_references(inventory: SourceInventory) -> list[NameReference]:
    """Columns named `<table>_id` (any case convention, a prefix such as `manager_` allowed) that
    refer to a table with a one-column primary key. A table's name is matched whole or without its
    first word (`ums_member` is also `member`)."""
    stems: dict[str, list[TableInfo]] = {}
    for t in inventory.tables:
        if len(t.primary_key) != 1 or t.partition_of:
            continue
        words = [_singular(w) for w in tokens(t.name)]
        for stem in {"_".join(words), "_".join(words[1:])} - {""}:
            stems.setdefault(stem, []).append(t)
    found = []
    for t in inventory.tables:
        for c in t.columns:
            words = tokens(c.name)
            if len(words) < 2 or words[-1] != "id":
                continue
            words = [_singular(w) for w in words[:-1]]
            for start in range(len(words)):  # the longest name first: manager_staff_id -> staff
                targets = [
                    r for r in stems.get("_".join(words[start:]), []) if r.qualified_name != t.qualified_name
                ]
                if len(targets) == 1:
                    ref = targets[0]
                    found.append(
                        NameReference(t.qualified_name, c.name, ref.qualified_name, ref.primary_key[0])
                    )
                    break
    return found


def rank_subjects(
    inventory: SourceInventory,
    classification: ClassificationResult,
    links: Iterable[Link],
    references: Iterable[NameReference] = (),
) -> list[SubjectCandidate]:
    """Tables that may be the customers', best first: a name that says so (its last word above
    all), the tables referring to it (links or column names), its personal columns and rows. A
    table without a one-column primary key, or without rows, comes last."""
    owner = _owner(inventory)
    referred: dict[str, set[str]] = {}
    for link in links:
        referred.setdefault(owner.get(link.ref_table, link.ref_table), set()).add(
            owner.get(link.table, link.table)
        )
    for ref in references:
        referred.setdefault(ref.ref_table, set()).add(owner.get(ref.table, ref.table))
    candidates = []
    for t in inventory.tables:
        if t.partition_of:
            continue
        q = t.qualified_name
        strength, word = _name_says(t.name, SUBJECT_WORDS, SUBJECT_WORDS_ZH)
        personal = len(classification.personal_columns(q))
        if not strength and not personal:
            continue
        by = len(referred.get(q, set()) - {q})
        score = (
            {2: 40, 1: 12, 0: 0}[strength]
            + 3 * min(by, 10)
            + 2 * min(personal, 8)
            + 2 * math.log10(t.row_count + 1)
        )
        if len(t.primary_key) != 1 or not t.row_count:
            score -= 60
        candidates.append(
            SubjectCandidate(q, round(score, 1), t.row_count, personal, by, word if strength else None)
        )
    return sorted(candidates, key=lambda c: (-c.score, c.table))


def _chains(subject: str, edges: Iterable, owner: dict[str, str]) -> dict[str, list]:
    """table -> the chain of edges (first hop first) that ties it to `subject`, breadth first."""
    by_ref: dict[str, list] = {}
    for e in edges:
        by_ref.setdefault(owner.get(e.ref_table, e.ref_table), []).append(e)
    chains: dict[str, list] = {subject: []}
    frontier = [subject]
    while frontier:
        nxt = []
        for ref in frontier:
            for e in sorted(by_ref.get(ref, []), key=lambda e: (e.table, str(getattr(e, "columns", "")))):
                for table in {e.table, owner.get(e.table, e.table)}:
                    if table not in chains:
                        chains[table] = [e, *chains[ref]]
                        nxt.append(table)
        frontier = nxt
    chains.pop(subject)
    return chains


def _contact(draft: Draft, owner: dict[str, str]) -> dict[str, str] | None:
    """Where notices go: an e-mail column of the subject table, else of the linked table with the
    fewest rows per subject (a profile before an order)."""
    cls, subject = draft.classification, draft.subject_table
    tables = {t.qualified_name: t for t in draft.inventory.tables}
    near = [subject] + sorted(
        (t for t in {**draft.linked, **draft.by_name} if owner.get(t, t) == t),
        key=lambda t: (len(draft.linked.get(t) or draft.by_name.get(t) or []), tables[t].row_count, t),
    )
    for table in near:
        emails = [f for f in cls.personal_columns(table) if CONTACT_CATEGORY in f.categories]
        if not emails:
            continue
        # a column meant for addresses before free text that happens to hold some
        email = sorted(emails, key=lambda f: (f.reason.startswith("free text"), -f.match_ratio, f.column))[0]
        names = [f for f in cls.personal_columns(table) if NAME_CATEGORY in f.categories]
        names.sort(key=lambda f: ("name" not in f.column.lower(), f.reason.startswith("free text"), f.column))
        info = tables[table]
        return {
            "table": table,
            "email_column": email.column,
            "name_column": names[0].column if names else "TODO_name_column",
            "link_column": info.primary_key[0]
            if table == subject and len(info.primary_key) == 1
            else "TODO_link_column",
            "share": f"{email.matches} of {email.values_checked} sampled values are e-mail addresses",
        }
    return None


def build_draft(
    engine: sa.Engine,
    *,
    source_id: str = "source",
    where: str = "",
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    progress: Callable[[str], None] | None = None,
) -> Draft:
    """Inventory, classify (a sample) and link the database behind `engine`, and propose a draft."""
    from dereg.classify.engine import classify_source
    from dereg.inventory.links import find_links
    from dereg.inventory.sql import inventory_source

    inventory = inventory_source(engine, source_id)
    if progress:
        progress(
            f"inventory: {len(inventory.tables)} tables, {sum(t.row_count for t in inventory.tables):,} rows"
        )
    classification = classify_source(
        engine, inventory, sample_size=sample_size, closure_date=dt.date.today(), subject_table=None
    )
    if progress:
        progress(f"classified: {sum(1 for c in classification.columns if c.personal)} personal column(s)")
    return propose(
        inventory,
        classification,
        lambda subject: find_links(engine, inventory, subject_table=subject),
        where=where,
    )


def propose(
    inventory: SourceInventory,
    classification: ClassificationResult,
    links_for: Callable[[str], list[Link]],
    *,
    where: str = "",
) -> Draft:
    """The draft for an inventoried and classified source; `links_for(subject_table)` gives the
    source's links once the subject table is chosen (`find_links`)."""
    source_id = inventory.source_id
    references = name_references(inventory)
    # ranked on declared keys and column names; find_links then ties the tables to the chosen subject
    declared = [
        Link(t.qualified_name, list(fk.columns), fk.ref_qualified_name, list(fk.ref_columns))
        for t in inventory.tables
        for fk in t.foreign_keys
    ]
    candidates = rank_subjects(inventory, classification, declared, references)
    subject = candidates[0].table if candidates else None
    links = list(links_for(subject)) if subject else []
    draft = Draft(source_id, where, inventory, classification, links, candidates, subject)
    if subject is None:
        return draft
    owner = _owner(inventory)
    draft.linked = _chains(subject, links, owner)
    for link in links:  # an address or a profile of the subjects, or a store they all share: a person says
        if owner.get(link.table, link.table) == subject and link.ref_table != subject:
            draft.referenced.setdefault(link.ref_table, link)
    draft.by_name = {
        t: chain
        for t, chain in _chains(subject, [*links, *references], owner).items()
        if owner.get(t, t) not in draft.linked and any(isinstance(e, NameReference) for e in chain)
    }
    draft.notify = _contact(draft, owner)
    for t in inventory.tables:
        q = t.qualified_name
        if t.partition_of or q == subject:
            continue
        strength, word = _name_says(t.name, ACCOUNTING_WORDS, ACCOUNTING_WORDS_ZH)
        if strength and t.row_count and (q in draft.linked or q in draft.by_name):
            draft.retain.append((q, word))
    for t in inventory.tables:
        q = t.qualified_name
        if q == subject or owner[q] in draft.linked or q in draft.linked:
            continue
        personal = classification.personal_columns(q)
        if personal:
            draft.undecided[q] = {f.column: list(f.categories) for f in personal}
    return draft


# --- writing it ----------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A YAML scalar for `text` (JSON's double-quoted string is valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _hop(e) -> str:
    if isinstance(e, NameReference):
        return f"{e.table}({e.column}) -> {e.ref_table}({e.ref_column}) [column name only, not confirmed]"
    evidence = ", ".join(f"{k} {v}" for k, v in sorted(e.evidence.items()))
    return f"{e.describe()} [{e.kind}{': ' + evidence if evidence else ''}]"


def render_draft(draft: Draft) -> str:
    """The draft as YAML with comments: placeholders start with TODO; nothing but names and counts."""
    inv = draft.inventory
    rows = {t.qualified_name: t.row_count for t in inv.tables}
    out = [
        f"# Draft company manifest written by `dereg init` for {draft.where or inv.source_id}",
        f"# on {dt.date.today().isoformat()}: {len(inv.tables)} tables, {len(draft.links)} link(s) found,",
        f"# {sum(1 for c in draft.classification.columns if c.personal)} personal column(s) in a sample of "
        f"{draft.classification.sample_size} rows per table.",
        "# Names and counts only: no value from the database is written here.",
        "# Fill in every TODO and read every comment (docs/manifest.md), then start a dry run.",
        "company_id: TODO_company_id  # lower-case letters, digits and _; the DAG is closure__<company_id>",
        "name:",
        f"  zh: {_q('TODO: 公司中文名称')}",
        f"  en: {_q('TODO: the company name in English')}",
        f"legal_basis: {_q('TODO: why the data is erased, e.g. PIPL Art. 47 (the company is deregistering)')}",
        f"closure_date: {_q('TODO: YYYY-MM-DD')}",
        "contacts:",
        f"  operations_email: {_q('TODO: where failure alerts go')}",
        f"  sender: {_q('TODO: Company name <privacy@company.example>')}",
        f"  complaint: {_q('TODO: the complaint channel printed in every notice')}",
        "approval:",
        f"  approvers: [{_q('TODO: Airflow user name of the approver (not who triggers the run)')}]",
        "sources:",
        f"  - id: {inv.source_id}",
        f"    conn_id: {_q('TODO: the Airflow connection id of this database')}",
    ]
    if draft.candidates:
        out.append("    # The customers' table (data subjects). Candidates, best first:")
        for i, c in enumerate(draft.candidates[:8], start=1):
            out.append(f"    #   {i}. {c.table}: {c.describe()}")
        out.append(f"    subject_table: {draft.subject_table}")
    else:
        out.append("    # No table looks like the customers' (no personal columns found): name it")
        out.append("    subject_table: TODO_subject_table")
    out += _notify_lines(draft)
    out += _link_lines(draft, rows)
    out += _retain_lines(draft, rows)
    out += _undecided_lines(draft, rows)
    out += [
        "backup:",
        f"  conn_id: {_q('TODO: the Airflow aws connection of the off-site store')}",
        f"  bucket: {_q('TODO: bucket name')}",
        f"  prefix: {_q('TODO: key prefix of this company')}",
        f"  region: {_q('TODO: region, one of include/policy/regions.yaml')}",
        "  retention_days: TODO  # whole number of days the backup is kept",
        "",
    ]
    return "\n".join(out)


def _notify_lines(draft: Draft) -> list[str]:
    n = draft.notify
    if n is None:
        return [
            "    # TODO notify: no e-mail column found in the subject table or a linked table. A real run",
            "    # needs a way to reach the customers: name the table and columns holding their addresses",
            "    # (docs/manifest.md, sources[].notify).",
        ]
    where = (
        "the subject table itself" if n["table"] == draft.subject_table else "a table linked to the subjects"
    )
    return [
        f"    # TODO check: notices go to the e-mail column found in {where}. link_column: the subject",
        "    # table's column holding the recipient's key (for the subject table itself, its own key).",
        f"    # {n['email_column']}: {n['share']}.",
        "    notify:",
        f"      table: {n['table']}",
        f"      email_column: {n['email_column']}",
        f"      name_column: {n['name_column']}",
        f"      link_column: {n['link_column']}",
    ]


def _link_lines(draft: Draft, rows: dict[str, int]) -> list[str]:
    out = []
    if draft.linked:
        out.append(
            "    # Tables linked to the subjects (their linked rows are erased, or pseudonymized if kept):"
        )
        for table in sorted(draft.linked):
            chain = draft.linked[table]
            out.append(f"    #   {table} ({rows.get(table, 0)} rows): " + "; ".join(_hop(e) for e in chain))
    if draft.by_name:
        out.append("    # Tables whose column names say they refer to the subjects, a link inventory did not")
        out.append("    # confirm. Check each, and add the ones that are right (uncomment):")
        out.append("    # links:")
        added = set()
        for table in sorted(draft.by_name):
            for e in draft.by_name[table]:
                if isinstance(e, NameReference) and (e.table, e.column) not in added:
                    added.add((e.table, e.column))
                    out.append(
                        f"    #   - {{table: {e.table}, columns: [{e.column}], references: {e.ref_table}, "
                        f"reason: {_q('TODO: why this column holds ' + e.ref_table + ' keys')}}}"
                        f"  # {rows.get(e.table, 0)} rows"
                    )
    return out


def _retain_lines(draft: Draft, rows: dict[str, int]) -> list[str]:
    if not draft.retain:
        return ["    # No table looks like accounting records; list under retain: what the law keeps."]
    out = [
        "    # Tables that look like accounting records, proposed as kept by law (rows stay, personal",
        "    # columns pseudonymized). Remove those the law does not keep; fill in the law and years:",
        "    retain:",
    ]
    for table, word in draft.retain:
        out += [
            f"      - table: {table}  # name says {word}; {rows.get(table, 0)} rows",
            f"        law: {_q('TODO: the law and article')}",
            "        years: TODO",
            "        action: pseudonymize",
        ]
    return out


def _undecided_lines(draft: Draft, rows: dict[str, int]) -> list[str]:
    if not draft.undecided:
        return []
    out = [
        "    # Undecided: personal data in tables with no link to the subjects. The plan stops (in a",
        "    # real run) until each is decided:",
    ]
    for table in sorted(draft.undecided):
        cols = ", ".join(f"{c} [{', '.join(cats)}]" for c, cats in draft.undecided[table].items())
        named = (
            " (linked by a column name above: adding that link decides it)" if table in draft.by_name else ""
        )
        if table in draft.referenced:
            named = f" (the subjects refer to it: {draft.referenced[table].describe()}; theirs, or shared?)"

        out.append(f"    #   {table} ({rows.get(table, 0)} rows){named}: {cols}")
    first = sorted(draft.undecided)[0]
    column = next(iter(draft.undecided[first]))
    out += [
        "    # Decide a table (erase its rows, replace its personal columns by tokens, or keep it as it is",
        "    # when its personal data is not the customers': staff accounts, the company's own addresses):",
        "    # decisions:",
        f"    #   - {{table: {first}, action: erase, reason: {_q('TODO: why')}}}",
        f"    #   - {{table: {first}, action: pseudonymize, reason: {_q('TODO: why')}}}",
        f"    #   - {{table: {first}, action: keep, reason: {_q('TODO: why')}}}",
        "    # or say a column holds no personal data at all:",
        "    # classify:",
        "    #   overrides:",
        f"    #     - {{table: {first}, column: {column}, personal: false, reason: {_q('TODO: why')}}}",
    ]
    return out
