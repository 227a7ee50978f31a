"""The value scanner: every detector that recognises a kind by its own shape, run over text.

Three entry points share one set of rules:

- `spans(text)` finds the identifiers inside one value (a remark, a JSON document, a whole cell);
- `scan_values(values)` counts, over many values, how many hold each category (the benchmark's and
  the post-erasure check's unit of work);
- `scan_block(text)` runs over a block of many rows at once (a COPY stream, tab-separated), so a
  full scan pays the regular-expression engine once per block instead of once per value.

A combined candidate pattern (the union of every embedded detector's pattern) is tried first: most
values and most blocks hold no candidate at all and cost one C-level search. Where detectors claim
overlapping text the earlier one in `DETECTORS` wins (a resident ID that also passes Luhn is not
also a card number; a company's credit code is not a person's anything).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache

from dereg.classify import DETECTORS

#: categories that are recognised but are not personal information (a company's credit code)
NOT_PERSONAL = frozenset({"organisation_id"})


def embedded_detectors() -> tuple:
    """The detectors searched inside free text, in priority order."""
    return tuple(d for d in DETECTORS if getattr(d, "EMBEDDED", True))


def _scoped(pattern: re.Pattern) -> str:
    flags = ""
    if pattern.flags & re.IGNORECASE:
        flags += "i"
    if pattern.flags & re.VERBOSE:
        flags += "x"
    return f"(?{flags}:{pattern.pattern})" if flags else f"(?:{pattern.pattern})"


@lru_cache(maxsize=1)
def candidate_pattern() -> re.Pattern | None:
    """One pattern that matches wherever any embedded detector could; None if they cannot be joined."""
    parts = [_scoped(d.PATTERN) for d in embedded_detectors() if getattr(d, "PATTERN", None) is not None]
    try:
        return re.compile("|".join(parts)) if parts else None
    except re.error:  # a detector's pattern with global inline flags: no shortcut, still correct
        return None


def spans(text: str) -> list[tuple[str, int, int, str]]:
    """(category, start, end, value) of every valid hit in `text`, by position; value is compacted."""
    quick = candidate_pattern()
    if quick is not None and quick.search(text) is None:
        return []
    taken: list[tuple[int, int]] = []
    found = []
    for detector in embedded_detectors():
        for start, end, value in detector.finditer(text):
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            found.append((detector.CATEGORY, start, end, value))
    found.sort(key=lambda f: f[1])
    return found


def personal_spans(text: str) -> list[tuple[str, int, int, str]]:
    return [s for s in spans(text) if s[0] not in NOT_PERSONAL]


def scan_values(values: Iterable[object]) -> Counter:
    """category -> number of values holding at least one valid hit of it; key "_values" counts the
    non-empty values seen. Personal categories only."""
    counts: Counter = Counter()
    quick = candidate_pattern()
    search = quick.search if quick is not None else None
    seen = 0
    for value in values:
        if value is None:
            continue
        text = value if isinstance(value, str) else str(value)
        if not text:
            continue
        seen += 1
        if search is not None and search(text) is None:
            continue
        for category in {s[0] for s in personal_spans(text)}:
            counts[category] += 1
    counts["_values"] = seen
    return counts


def scan_block(block: str) -> Iterator[tuple[int, int, str, str]]:
    """Hits in a block of tab-separated rows, one row per line: (line start offset, field index,
    category, compacted value). The block must hold whole lines; fields must hold no raw tab or
    newline (COPY's text format escapes them)."""
    quick = candidate_pattern()
    if quick is not None:
        matches = list(quick.finditer(block))
        if not matches:
            return
        lines: set[int] = set()
        for m in matches:
            lines.add(block.rfind("\n", 0, m.start()) + 1)
    else:
        lines = set()
        start = 0
        while start < len(block):
            lines.add(start)
            nxt = block.find("\n", start)
            start = len(block) if nxt < 0 else nxt + 1
    for line_start in sorted(lines):
        line_end = block.find("\n", line_start)
        line = block[line_start : len(block) if line_end < 0 else line_end]
        for index, field in enumerate(line.split("\t")):
            for category, _, _, value in personal_spans(field):
                yield line_start, index, category, value
