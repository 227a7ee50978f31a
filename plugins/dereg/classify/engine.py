"""The classification engine: sample each table, run the detectors and name hints, conclude per column.

`classify_source` reads a sample spread over each table and yields one ColumnFinding for every
column, then counts the minors among the data subjects; `full_scan_hits` reads every text value of
every table and counts values that still hold a checksum-valid identifier (the post-erasure check);
`find_in_text` finds identifiers in one string. Raw values stay inside this module: findings carry
counts, reasons and masked examples only.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa

from dereg.classify import DETECTORS, cn_resident_id, names
from dereg.classify.taxonomy import level_of
from dereg.errors import SourceError
from dereg.model import ClassificationResult, ColumnFinding, SourceInventory, TableInfo
from dereg.redact import redact

log = logging.getLogger(__name__)

MINOR_AGE = 14  # PIPL Art. 28: personal information of a child under 14 is sensitive
STRUCTURED_SHARE = 0.30  # share of non-empty sampled values that must be valid hits
HINTED_SHARE = 0.10  # the same when the column's name agrees with the values
FREE_TEXT_LENGTH = 40  # mean length above which a column counts as free text
SCAN_BATCH = 2000

DESCRIPTIONS = {
    "cn_resident_id": "resident ID numbers",
    "cn_mobile": "mobile numbers",
    "email": "e-mail addresses",
    "bank_card": "bank card numbers",
}
_TEXT_TYPE = re.compile(r"CHAR|TEXT|CLOB|STRING|JSON", re.I)
_FREE_TEXT_TYPE = re.compile(r"TEXT|CLOB", re.I)
_CANDIDATE = re.compile(r"\d{6}|@")  # every detector needs one of these: skips most values cheaply
_GENDER_WORDS = frozenset({"男", "女", "男性", "女性", "male", "female"})
_SEPARATORS = re.compile(r"[\s:：,，;；()（）]")


# --- single strings ------------------------------------------------------------------------------


def _spans(text: str) -> list[tuple[str, int, int, str]]:
    """(category, start, end, value) of valid hits; earlier detectors win overlapping spans."""
    if not _CANDIDATE.search(text):
        return []
    taken: list[tuple[int, int]] = []
    found = []
    for detector in DETECTORS:
        for start, end, value in detector.finditer(text):
            if any(start < e and s < end for s, e in taken):
                continue  # an ID number that also passes Luhn is not a card number as well
            taken.append((start, end))
            found.append((detector.CATEGORY, start, end, value))
    return sorted(found, key=lambda f: f[1])


def _detector(category: str):
    return next(d for d in DETECTORS if d.CATEGORY == category)


def find_in_text(text: str) -> list[tuple[str, str]]:
    """(category, masked value) of every checksum-valid identifier in `text`, in order of position."""
    return [(cat, _detector(cat).mask(value)) for cat, _, _, value in _spans(str(text))]


def has_identifier(text: str) -> bool:
    """True when `text` holds at least one checksum-valid identifier."""
    return bool(_spans(str(text)))


# --- one column's sampled values ----------------------------------------------------------------


@dataclass
class _ColumnStats:
    nonempty: int = 0
    text_values: int = 0
    total_length: int = 0
    date_like: int = 0
    gender_like: int = 0
    containing: dict[str, int] = field(default_factory=dict)  # category -> values holding a hit
    any_hit: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    name_examples: list[str] = field(default_factory=list)

    def add(self, value) -> None:
        if value is None or isinstance(value, bytes | bytearray | memoryview):
            return
        if isinstance(value, date):  # date and datetime
            self.nonempty += 1
            self.date_like += 1
            return
        if isinstance(value, bool | float | Decimal):
            self.nonempty += 1
            return
        text = str(value).strip()
        if not text:
            return
        self.nonempty += 1
        if isinstance(value, str):
            self.text_values += 1
            self.total_length += len(text)
            if _as_date(text) is not None:
                self.date_like += 1
            if text.lower() in _GENDER_WORDS:
                self.gender_like += 1
            if len(self.name_examples) < 3 and len(text) <= 20:
                masked = text[0] + "*" * (len(text) - 1)
                if masked not in self.name_examples:
                    self.name_examples.append(masked)
        spans = _spans(text)
        if not spans:
            return
        self.any_hit += 1
        for cat in {s[0] for s in spans}:
            self.containing[cat] = self.containing.get(cat, 0) + 1
        for cat, _, _, raw in spans:
            examples = self.examples.setdefault(cat, [])
            masked = _detector(cat).mask(raw)
            if len(examples) < 3 and masked not in examples:
                examples.append(masked)

    @property
    def mean_length(self) -> float:
        return self.total_length / self.text_values if self.text_values else 0.0


def _as_date(value) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and 8 <= len(value.strip()) <= 26 and value[:4].isdigit():
        try:
            return datetime.fromisoformat(value.strip().replace("/", "-")).date()
        except ValueError:
            return None
    return None


def _pct(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else "0%"


def _conclude(table: str, column: str, column_type: str, stats: _ColumnStats) -> ColumnFinding:
    hinted = names.hints(column)
    hint_text = f"name hint {column}"
    n = stats.nonempty
    if n == 0:
        if hinted:
            return _finding(
                table, column, list(hinted), 0, 0, [], [f"no non-empty values sampled; {hint_text}"]
            )
        return _finding(table, column, [], 0, 0, [], ["no non-empty values sampled; name says nothing"])

    free_text = bool(_FREE_TEXT_TYPE.search(column_type or "")) or stats.mean_length > FREE_TEXT_LENGTH
    categories: list[str] = []
    reasons: list[str] = []

    # Values first: checksum-valid identifiers decide, whatever the column is called.
    for cat, description in DESCRIPTIONS.items():
        containing = stats.containing.get(cat, 0)
        if not containing:
            continue
        if free_text:
            categories.append(cat)
            reasons.append(f"free text: {containing} of {n} sampled values contain valid {description}")
        elif containing / n >= (HINTED_SHARE if cat in hinted else STRUCTURED_SHARE):
            categories.append(cat)
            reasons.append(
                f"{_pct(containing, n)} of {n} sampled values are valid {description}"
                + (f"; {hint_text}" if cat in hinted else "")
            )
    matches = stats.any_hit if categories else 0

    # Then name hints, for what values cannot prove, unless the values contradict them.
    mostly_identifiers = stats.any_hit >= 0.5 * n
    for cat in hinted:
        if cat in categories:
            continue
        if cat in DESCRIPTIONS:
            if not categories:
                reasons.append(
                    f"{hint_text} contradicted: {_pct(stats.containing.get(cat, 0), n)} of {n} "
                    f"sampled values are valid {DESCRIPTIONS[cat]}"
                )
            continue
        if cat == "phone" and "cn_mobile" in categories:
            continue  # a mobile number is the more precise answer
        if mostly_identifiers:
            continue  # the values are identifiers of another kind
        textual = stats.text_values >= 0.5 * n
        fits = {
            "birth_date": stats.date_like >= 0.5 * n,
            "gender": stats.text_values == 0 or stats.mean_length <= 8,
            "name": textual and stats.mean_length <= 40,
        }.get(cat, textual)
        if fits:
            categories.append(cat)
            reasons.append(f"{hint_text}; {n} sampled values fit {cat}")
        else:
            reasons.append(f"{hint_text} suggests {cat} but the {n} sampled values do not fit")

    if "gender" not in categories and stats.text_values and stats.gender_like >= 0.9 * n:
        categories.append("gender")
        reasons.append(f"{_pct(stats.gender_like, n)} of {n} sampled values are gender words")
    if not reasons:
        reasons.append(f"no valid identifiers in {n} sampled values; name says nothing")

    examples = [m for cat in categories for m in stats.examples.get(cat, [])]
    if not examples and "name" in categories:
        examples = list(stats.name_examples)
    return _finding(table, column, categories, n, matches, examples[:3], reasons)


def _finding(
    table: str,
    column: str,
    categories: list[str],
    checked: int,
    matches: int,
    examples: list[str],
    reasons: list[str],
) -> ColumnFinding:
    return ColumnFinding(
        table=table,
        column=column,
        categories=categories,
        level=level_of(categories),
        values_checked=checked,
        matches=matches,
        masked_examples=examples,
        reason="; ".join(reasons),
    )


# --- reading tables ------------------------------------------------------------------------------


def _table_clause(info: TableInfo, columns: Iterable[str]) -> sa.TableClause:
    return sa.table(info.name, *[sa.column(c) for c in columns], schema=info.schema)


def sample_query(engine: sa.Engine, info: TableInfo, sample_size: int) -> sa.Select:
    """All rows of a small table; of a larger one, a sample spread over the whole table: every
    k-th integer key (deterministic, uses the index), else rows in random order."""
    t = _table_clause(info, [c.name for c in info.columns])
    query = sa.select(*[t.c[c.name] for c in info.columns])
    if info.row_count <= sample_size:
        return query.limit(sample_size)
    pk_types = {c.name: (c.type or "").upper() for c in info.columns if c.name in info.primary_key}
    if len(info.primary_key) == 1 and "INT" in pk_types.get(info.primary_key[0], ""):
        k = math.ceil(info.row_count / sample_size)
        pk = t.c[info.primary_key[0]]
        return query.where(pk % k == 0).order_by(pk).limit(sample_size)
    rand = sa.func.rand() if engine.dialect.name in {"mysql", "mariadb"} else sa.func.random()
    return query.order_by(rand).limit(sample_size)


def _source_error(source_id: str, engine: sa.Engine, what: str, exc: Exception) -> SourceError:
    url = engine.url
    where = f"host {url.host}" if url.host else f"file {url.database}" if url.database else "memory"
    return SourceError(
        f"source {source_id} at {where}: {what} failed ({type(exc).__name__}: "
        f"{redact(str(getattr(exc, 'orig', None) or exc))}); check that the database is "
        "reachable and that the connection's user may read every table"
    )


def classify_source(
    engine: sa.Engine, inventory: SourceInventory, *, sample_size: int, closure_date: date, subject_table: str
) -> ClassificationResult:
    """One finding per column of every table; minors counted among the rows of `subject_table`."""
    findings: list[ColumnFinding] = []
    try:
        with engine.connect() as conn:
            for info in inventory.tables:
                stats = {c.name: _ColumnStats() for c in info.columns}
                if info.columns:
                    for row in conn.execute(sample_query(engine, info, sample_size)):
                        for col, value in zip(info.columns, row, strict=True):
                            stats[col.name].add(value)
                findings += [_conclude(info.name, c.name, c.type, stats[c.name]) for c in info.columns]
            result = ClassificationResult(source_id=inventory.source_id, columns=findings)
            _count_minors(conn, inventory, result, subject_table, closure_date)
    except sa.exc.SQLAlchemyError as exc:
        raise _source_error(inventory.source_id, engine, "classification", exc) from exc
    log.info(
        "classified %s: %d columns, %d personal; %d of %d subjects are minors",
        inventory.source_id,
        len(findings),
        sum(1 for f in findings if f.personal),
        result.minors,
        result.subjects,
    )
    return result


def is_under(age: int, born: date, on: date) -> bool:
    """True when someone born on `born` has not reached `age` years on `on`."""
    try:
        birthday = born.replace(year=born.year + age)
    except ValueError:  # born on 29 February: the birthday is 1 March in common years
        birthday = date(born.year + age, 3, 1)
    return on < birthday


def _count_minors(
    conn: sa.Connection,
    inventory: SourceInventory,
    result: ClassificationResult,
    subject_table: str,
    closure_date: date,
) -> None:
    try:
        subject = inventory.table(subject_table)
    except KeyError:
        log.warning(
            "subject table %s is not in source %s; minors not counted", subject_table, inventory.source_id
        )
        return
    mine = [f for f in result.columns if f.table == subject_table]
    birth_col = next((f for f in mine if "birth_date" in f.categories), None)
    id_col = next((f for f in mine if "cn_resident_id" in f.categories), None)
    if birth_col is None and id_col is None:
        result.subjects = subject.row_count
        log.warning("no birth date or resident ID column in %s; minors cannot be counted", subject_table)
        return
    cols = [f.column for f in (birth_col, id_col) if f is not None]
    t = _table_clause(subject, cols)
    subjects = minors = 0
    rows = conn.execution_options(yield_per=SCAN_BATCH).execute(sa.select(*[t.c[c] for c in cols]))
    for row in rows:
        subjects += 1
        values = dict(zip(cols, row, strict=True))
        born = _as_date(values.get(birth_col.column)) if birth_col else None
        if born is None and id_col is not None and values.get(id_col.column):
            raw = str(values[id_col.column])
            born = cn_resident_id.birth_date(raw) if cn_resident_id.is_valid(raw) else None
        if born is not None and is_under(MINOR_AGE, born, closure_date):
            minors += 1
    result.subjects, result.minors = subjects, minors
    if not minors:
        return
    used = birth_col or id_col
    if "minor" not in used.categories:
        used.categories.append("minor")
    linked = {subject_table} | {
        t.name for t in inventory.tables if any(fk.ref_table == subject_table for fk in t.foreign_keys)
    }
    note = (
        f"sensitive: {minors} of {subjects} subjects in {subject_table} are under {MINOR_AGE} on "
        f"{closure_date.isoformat()} (PIPL Art. 28)"
    )
    for f in result.columns:
        if f.personal and f.table in linked:
            f.level = "sensitive"
            f.reason = f"{f.reason}; {note}" if f.reason else note


# --- post-erasure scan ---------------------------------------------------------------------------


def text_columns(info: TableInfo) -> list[str]:
    return [c.name for c in info.columns if _TEXT_TYPE.search(c.type or "")]


def full_scan_hits(engine: sa.Engine, inventory: SourceInventory) -> dict[tuple[str, str], int]:
    """(table, column) -> number of values holding a checksum-valid resident ID, mobile, e-mail or
    bank card, over EVERY value of every text column. Only columns with hits; {} = nothing found."""
    hits: dict[tuple[str, str], int] = {}
    try:
        with engine.connect() as conn:
            for info in inventory.tables:
                cols = text_columns(info)
                if not cols:
                    continue
                t = _table_clause(info, cols)
                counts = [0] * len(cols)
                rows = conn.execution_options(yield_per=SCAN_BATCH).execute(
                    sa.select(*[t.c[c] for c in cols])
                )
                for row in rows:
                    for i, value in enumerate(row):
                        if value is not None and _spans(str(value)):
                            counts[i] += 1
                hits.update({(info.name, c): n for c, n in zip(cols, counts, strict=True) if n})
    except sa.exc.SQLAlchemyError as exc:
        raise _source_error(inventory.source_id, engine, "full scan", exc) from exc
    log.info(
        "full scan of %s: %d columns hold identifiers (%d values)",
        inventory.source_id,
        len(hits),
        sum(hits.values()),
    )
    return hits
