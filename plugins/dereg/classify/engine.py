"""The classification engine: sample every column, apply the detectors and the name hints, count minors.

Values decide where they can: a column is a resident-ID column when most of its sampled values are
valid ID numbers, whatever it is called; a column called `mobile` whose values are not mobile numbers
is not a mobile column. Free text is searched for embedded values. Only masked examples leave here.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.classify import DETECTORS, cn_resident_id, names
from dereg.classify.taxonomy import level_of
from dereg.model import ClassificationResult, ColumnFinding, SourceInventory, TableInfo

log = logging.getLogger(__name__)

#: share of non-empty sampled values that must be valid for a structured column to take a category
STRUCTURED_SHARE = 0.5
#: categories a name hint may assign on its own (values cannot prove them)
HINT_ONLY = {"name", "gender", "birth_date", "address", "health", "phone", "im_account", "passport"}
MINOR_AGE = 14
BATCH = 2000


def find_in_text(text: str) -> list[tuple[str, str]]:
    """Every checksum-valid value embedded in `text`, as (category, masked value)."""
    found: list[tuple[str, str]] = []
    taken: list[tuple[int, int]] = []
    for detector in DETECTORS:
        for match in detector.PATTERN.finditer(text):
            start, end = match.span(1)
            if any(start < e and s < end for s, e in taken):
                continue  # an ID number is not also a card number
            if detector.is_valid(match.group(1)):
                taken.append((start, end))
                found.append((detector.CATEGORY, detector.mask(match.group(1))))
    return found


def _has_hit(text: str) -> bool:
    return bool(find_in_text(text))


def _quote(engine: Engine, name: str) -> str:
    return engine.dialect.identifier_preparer.quote(name)


def _table(info: TableInfo) -> sa.TableClause:
    return sa.table(info.name, *[sa.column(c.name) for c in info.columns], schema=info.schema)


def sample_rows(engine: Engine, info: TableInfo, sample_size: int) -> list[tuple]:
    """Up to `sample_size` rows spread over the whole table (random order, not the first rows)."""
    table = _table(info)
    query = sa.select(*table.columns)
    if info.row_count > sample_size:
        random = sa.func.rand() if engine.dialect.name in ("mysql", "mariadb") else sa.func.random()
        query = query.order_by(random)
    query = query.limit(sample_size)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def _finding(info: TableInfo, index: int, values: list) -> ColumnFinding:
    column = info.columns[index]
    non_empty = [v for v in values if v is not None and str(v).strip() != ""]
    hint = names.hint(column.name)
    finding = ColumnFinding(table=info.name, column=column.name, categories=[], level=None,
                            values_checked=len(non_empty))
    if not non_empty or column.primary_key:
        finding.reason = "no values" if not non_empty else "primary key"
        return finding
    texts = [v for v in non_empty if isinstance(v, str)]
    whole: Counter[str] = Counter()
    embedded: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for text in texts:
        for detector in DETECTORS:
            if detector.is_valid(text):
                whole[detector.CATEGORY] += 1
                examples.setdefault(detector.CATEGORY, detector.mask(text))
                break
        else:  # remarks, JSON, "电话 138...": any embedded valid value makes the column personal
            for category, masked in find_in_text(text):
                embedded[category] += 1
                examples.setdefault(category, masked)
    reasons = []
    categories = []
    for category, count in whole.most_common():
        if count / len(non_empty) >= STRUCTURED_SHARE:
            categories.append(category)
            finding.matches = max(finding.matches, count)
            reasons.append(f"{count} of {len(non_empty)} sampled values are valid {category}")
    if embedded:
        for category, count in embedded.most_common():
            if category not in categories:
                categories.append(category)
            finding.matches += count
        reasons.append("text holding embedded " + ", ".join(f"{n} {c}" for c, n in embedded.most_common()))
    if hint and not categories:
        if hint in HINT_ONLY or (hint == "birth_date" and not texts):
            categories.append(hint)
            reasons.append(f"column name suggests {hint}")
        else:
            reasons.append(f"column name suggests {hint}, but the values are not valid {hint} (ignored)")
    elif hint:
        reasons.append(f"name hint {hint}")
    finding.categories = categories
    finding.level = level_of(categories)
    finding.masked_examples = [examples[c] for c in categories if c in examples][:3]
    finding.reason = "; ".join(reasons) or "no personal values found"
    return finding


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _as_date(value) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return cn_resident_id.birth_date(value) if cn_resident_id.is_valid(value) else None
    return None


def count_minors(engine: Engine, info: TableInfo, findings: list[ColumnFinding], closure_date: dt.date) -> int:
    """Subjects under 14 on the closure date, from a birth-date column or else the ID numbers (every row)."""
    by_name = {f.column: f for f in findings}
    birth_cols = [c.name for c in info.columns if "birth_date" in by_name[c.name].categories]
    id_cols = [c.name for c in info.columns if "cn_resident_id" in by_name[c.name].categories]
    columns = birth_cols[:1] + id_cols[:1]
    if not columns:
        return 0
    table = _table(info)
    minors = 0
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=BATCH).execute(sa.select(*[table.c[c] for c in columns]))
        for row in result:
            born = next((d for d in (_as_date(v) for v in row) if d is not None), None)
            if born is not None and _age(born, closure_date) < MINOR_AGE:
                minors += 1
    return minors


def classify_source(engine: Engine, inventory: SourceInventory, *, sample_size: int, closure_date: dt.date,
                    subject_table: str) -> ClassificationResult:
    findings: list[ColumnFinding] = []
    for info in inventory.tables:
        rows = sample_rows(engine, info, sample_size)
        table_findings = [_finding(info, i, [r[i] for r in rows]) for i in range(len(info.columns))]
        findings.extend(table_findings)
        personal = [f for f in table_findings if f.personal]
        log.info("classify %s.%s: %d sampled rows, %d personal columns", inventory.source_id, info.name, len(rows),
                 len(personal))
    result = ClassificationResult(source_id=inventory.source_id, columns=findings)
    subject = next((t for t in inventory.tables if t.name == subject_table), None)
    if subject is not None:
        result.subjects = subject.row_count
        result.minors = count_minors(engine, subject, [f for f in findings if f.table == subject_table],
                                     closure_date)
    if result.minors:
        # PIPL Art. 28: all personal information of a child under 14 is sensitive.
        about_subjects = {subject_table} | {t.name for t in inventory.tables
                                            if any(fk.ref_table == subject_table for fk in t.foreign_keys)}
        for f in findings:
            if f.personal and f.table in about_subjects and f.level != "sensitive":
                f.level = "sensitive"
                f.reason += f"; sensitive: {result.minors} subjects are under {MINOR_AGE} (PIPL Art. 28)"
    return result


def _text_columns(info: TableInfo) -> list[str]:
    textual = ("CHAR", "TEXT", "CLOB", "STRING", "JSON", "NAME", "VARCHAR")
    return [c.name for c in info.columns if any(t in c.type.upper() for t in textual) or c.type.upper() == "NULL"]


def _stream(engine: Engine, info: TableInfo, columns: list[str]) -> Iterator[tuple]:
    table = _table(info)
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=BATCH).execute(sa.select(*[table.c[c] for c in columns]))
        yield from result


def full_scan_hits(engine: Engine, inventory: SourceInventory) -> dict[tuple[str, str], int]:
    """Read every value of every text column; count values holding a checksum-valid personal value.

    Returns only columns with hits: an empty dict means nothing was found.
    """
    hits: dict[tuple[str, str], int] = {}
    for info in inventory.tables:
        columns = _text_columns(info)
        if not columns:
            continue
        counts = [0] * len(columns)
        scanned = 0
        for row in _stream(engine, info, columns):
            scanned += 1
            for i, value in enumerate(row):
                if isinstance(value, str) and value and _has_hit(value):
                    counts[i] += 1
        for name, count in zip(columns, counts, strict=True):
            if count:
                hits[(info.name, name)] = count
        log.info("full scan %s.%s: %d rows, %d text columns, %d with personal values", inventory.source_id,
                 info.name, scanned, len(columns), sum(1 for c in counts if c))
    return hits
