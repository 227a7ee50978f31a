"""The value scanner: every detector that recognises a kind by its own shape, run over text.

Three entry points share one set of rules:

- `spans(text)` finds the identifiers inside one value (a remark, a JSON document, a whole cell);
- `scan_values(values)` counts, over many values, how many hold each category (the benchmark's and
  the post-erasure check's unit of work);
- `scan_block(text)` runs over a block of many rows at once (a COPY stream, tab-separated), so a
  full scan pays the regular-expression engine once per block instead of once per value;
  `scan_stream(blocks)` does the same over a stream of blocks cut anywhere, in time linear in the
  text and memory bounded by one block, however long one line or one value is. The full scan
  uses `stream_hits` (the same hits, values not yet compacted) behind `digit_fields`, which takes
  the columns of plain digit runs (IDs, cards, mobiles) out of the stream and checks each value
  on its own, with the same result.

A combined candidate pattern (the union of every embedded detector's pattern) is tried first: most
values and most blocks hold no candidate at all and cost one C-level search. Where detectors claim
overlapping text the earlier one in `DETECTORS` wins (a resident ID that also passes Luhn is not
also a card number; a company's credit code is not a person's anything).
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from itertools import compress, repeat

from dereg.classify import DETECTORS, bank_card, cn_resident_id

#: categories that are recognised but are not personal information (a company's credit code)
NOT_PERSONAL = frozenset({"organisation_id"})


@lru_cache(maxsize=1)
def embedded_detectors() -> tuple:
    """The detectors searched inside free text, in priority order."""
    return tuple(d for d in DETECTORS if getattr(d, "EMBEDDED", True))


# Every embedded kind starts a token: no identifier begins right after a letter, digit or
# underscore (each detector's own pattern says so with its lookbehind). Testing that once, before
# the alternatives, lets the scan skip the inside of every word, number and token with one check
# instead of trying each detector there (most of a full scan's text is inside such runs).
_TOKEN_START = r"(?<![0-9A-Za-z_])"


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
        return re.compile(_TOKEN_START + "(?:" + "|".join(parts) + ")") if parts else None
    except re.error:  # a detector's pattern with global inline flags: no shortcut, still correct
        return None


def spans(text: str, *, searched: bool = False, mask: int = -1) -> list[tuple[str, int, int, str]]:
    """(category, start, end, value) of every valid hit in `text`, by position; value is compacted.
    `searched`: the caller already found a candidate in `text`. `mask` (from `span_masks`): the
    bits, by index in `embedded_detectors()`, of every detector that may have a valid hit in
    `text`; the others are not tried (they would find nothing, so they would take nothing from
    the rest either)."""
    if mask == 0:
        return []
    if not searched and mask == -1:
        quick = candidate_pattern()
        if quick is not None and quick.search(text) is None:
            return []
    taken: list[tuple[int, int]] = []
    found = []
    # in a run of digits (an ID, a card or a mobile number) a hit starts at the first character
    # (`_digit_run`): once one detector has taken it, the later ones could take nothing more
    one_hit = _digit_run(text)
    for i, detector in enumerate(embedded_detectors()):
        if not mask >> i & 1:
            continue
        for start, end, value in detector.finditer(text):
            if taken and any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            found.append((detector.CATEGORY, start, end, value))
        if one_hit and found:
            break
    if len(found) > 1:
        found.sort(key=lambda f: f[1])
    return found


def span_masks(texts: list[str]) -> list[int] | None:
    """For each of `texts`, a `spans` mask that holds every detector with a valid hit in it (and
    maybe more), from one native search over all of them joined by line ends (as a block's values
    are: the looser native patterns match there wherever the detectors' match in the text alone);
    None without the native search or where it cannot say (`native`)."""
    regions_of = _regions_finder()
    if regions_of is None or not texts:
        return None
    regions = regions_of("\n".join(texts), 0)
    if regions is None:
        return None
    starts = []
    at = 0
    for text in texts:
        starts.append(at)
        at += len(text) + 1
    masks = [0] * len(texts)
    last = len(texts) - 1
    for begin, end, mask in regions:
        # every text the region touches, the line end on either side included
        i = max(bisect.bisect_right(starts, begin) - 1, 0)
        while i <= last and starts[i] <= end:
            masks[i] |= mask
            i += 1
    return masks


def personal_spans(text: str) -> list[tuple[str, int, int, str]]:
    return [s for s in spans(text) if s[0] not in NOT_PERSONAL]


def scan_values(values: Iterable[object]) -> Counter:
    """category -> number of values holding at least one valid hit of it; key "_values" counts the
    non-empty values seen. Personal categories only."""
    counts: Counter = Counter()
    tagged = _tagged_pattern()
    if tagged is None:
        quick = candidate_pattern()

        def categories(text: str, mask: int | None = None) -> set[str]:
            # no tagged pattern: every detector's spans, where the candidate pattern finds one
            return {s[0] for s in spans(text)} if quick is None or quick.search(text) else set()
    else:
        detector_of = _group_detectors()
        chains = _fallback_chains()

        def categories(text: str, mask: int | None = None) -> set[str]:
            # one tagged search per candidate; most values have none and cost one search. With
            # `mask` (the native search's detectors that may match in the text), the pattern of
            # those detectors alone: it finds what the whole pattern finds there
            search = tagged.search if mask is None else _tagged_subset(mask).search
            found: set[str] = set()
            pos = 0
            while (m := search(text, pos)) is not None:
                first = detector_of[m.lastindex]
                raw = m.group()
                if first.is_valid(raw):
                    found.add(first.CATEGORY)
                    pos = m.end()
                    continue
                start = m.start()
                for match, is_valid, category in chains[first]:
                    other = match(text, start)
                    if other is not None and is_valid(other.group()):
                        found.add(category)
                        pos = other.end()
                        break
                else:
                    pos = start + 1
            return found

    texts = [t for t in (v if isinstance(v, str) else str(v) for v in values if v is not None) if t]
    for at in range(0, len(texts), SCAN_VALUES_BATCH):
        batch = texts[at : at + SCAN_VALUES_BATCH]
        # one native search over the batch first: a text it finds no candidate in (most) has no
        # valid hit of any detector, and skips its own search
        masks = span_masks(batch)
        for i, text in enumerate(batch):
            if masks is not None and not masks[i]:
                continue
            for category in categories(text, masks[i] if masks is not None else None):
                if category not in NOT_PERSONAL:
                    counts[category] += 1
    counts["_values"] = len(texts)
    return counts


#: texts of `scan_values` searched natively together (their joined text is held once more)
SCAN_VALUES_BATCH = 4096


@lru_cache(maxsize=1)
def _tagged_pattern() -> re.Pattern | None:
    """The candidate pattern with one named group per embedded detector (`_d0`, `_d1`, ...), so a
    single pass over a block says which detector each candidate belongs to."""
    detectors = embedded_detectors()
    if not detectors or any(getattr(d, "PATTERN", None) is None for d in detectors):
        return None
    parts = [f"(?P<_d{i}>{_scoped(d.PATTERN)})" for i, d in enumerate(detectors)]
    try:
        return re.compile(_TOKEN_START + "(?:" + "|".join(parts) + ")")
    except re.error:
        return None


@lru_cache(maxsize=1)
def _group_detectors() -> dict[int, object]:
    """Index of each detector's group in the tagged pattern -> the detector (`Match.lastindex`
    names the outermost group that matched)."""
    detectors = embedded_detectors()
    return {
        index: detectors[int(name[2:])]
        for name, index in _tagged_pattern().groupindex.items()
        if name.startswith("_d")
    }


@lru_cache(maxsize=1)
def _fallback_chains() -> dict[object, tuple]:
    """For each detector, the later ones in priority order as (pattern.match, is_valid, category):
    who may claim a candidate the first one rejects."""
    detectors = embedded_detectors()
    return {
        d: tuple((later.PATTERN.match, later.is_valid, later.CATEGORY) for later in detectors[i + 1 :])
        for i, d in enumerate(detectors)
    }


def _claim(
    block: str, m: re.Match, first: int, detectors: tuple = (), endpos: int | None = None
) -> tuple[object, int, str] | None:
    """(detector, end, raw) of the valid hit starting where `m` starts: the matched detector's,
    else the next detector in priority order whose own pattern matches there and validates."""
    detectors = detectors or embedded_detectors()
    start = m.start()
    for i in range(first, len(detectors)):
        detector = detectors[i]
        if i == first:
            raw, end = m.group(), m.end()
        else:
            other = detector.PATTERN.match(block, start, len(block) if endpos is None else endpos)
            if other is None:
                continue
            raw, end = other.group(), other.end()
        if detector.is_valid(raw):
            return detector, end, raw
    return None


def _claim_later(
    block: str, start: int, first: int, endpos: int, mask: int = -1
) -> tuple[object, int, str] | None:
    """(detector, end, raw) of the first detector from index `first` on, in priority order, whose
    own pattern matches at `start` and validates (the matched one rejected its candidate). Only
    the detectors whose bit is set in `mask` are tried (the native search's region says the
    others cannot match there)."""
    detectors = embedded_detectors()
    for i in range(first, len(detectors)):
        if not mask >> i & 1:
            continue
        other = detectors[i].PATTERN.match(block, start, endpos)
        if other is not None and detectors[i].is_valid(other.group()):
            return detectors[i], other.end(), other.group()
    return None


def _categories(text: str) -> set[str]:
    """Categories of the valid hits in `text` (as `spans` finds them), in one tagged pass."""
    search = _tagged_pattern().search
    found: set[str] = set()
    pos = 0
    while (m := search(text, pos)) is not None:
        claimed = _claim(text, m, int(m.lastgroup[2:]))
        if claimed is None:
            pos = m.start() + 1
            continue
        found.add(claimed[0].CATEGORY)
        pos = claimed[1]
    return found


#: a candidate starting this close to the end of a piece of a stream may be cut off by the piece's
#: end: it waits for the next piece (every identifier is far shorter than this)
STREAM_MARGIN = 4096
#: characters kept before the resumed search, so each pattern's look-behind sees the real text
_LOOK_BEHIND = 16


def scan_block(block: str) -> Iterator[tuple[int, int, str, str]]:
    """Hits in a block of tab-separated rows, one row per line: (line start offset, field index,
    category, compacted value). The block should end at a line end; fields must hold no raw tab
    or newline (COPY's text format escapes them). Hits come in block order, so those of one value
    are next to each other. `scan_stream([block])`."""
    return scan_stream((block,))


def scan_stream(pieces: Iterable[str]) -> Iterator[tuple[int, int, str, str]]:
    """`scan_block` over a stream of pieces of tab-separated rows cut anywhere (inside a line,
    inside a value): line start offsets count from the start of the stream, so (line start,
    field) names one value however the stream was cut.

    One pass of the tagged candidate pattern over the text; each candidate is validated where it
    stands. The line and field of a hit are followed as the search moves forward (the newlines
    and tabs between one hit and the next are counted once), so the work is linear in the text
    whatever the length of a line or a value; memory holds one piece and a short tail of the
    one before. A candidate that fails validation lets the search go on from its next character,
    so a shorter identifier inside it is still found; one that ran across fields is searched
    again inside its own field."""
    for line_start, field, detector, raw in stream_hits(pieces):
        yield line_start, field, detector.CATEGORY, detector.compact(raw)


def stream_hits(pieces: Iterable[str]) -> Iterator[tuple[int, int, object, str]]:
    """`scan_stream` with the detector and the matched text of each hit instead of its category
    and compacted value: a caller that needs the value of only a few hits (counts and a few
    examples) compacts only those."""
    tagged = _tagged_pattern()
    if tagged is None:
        detector_of = {d.CATEGORY: d for d in embedded_detectors()}
        for block in pieces:  # no shortcut pattern: whole lines, the slow way (values compacted)
            for line_start, field, category, value in _scan_block_by_field(block):
                yield line_start, field, detector_of[category], value
        return
    regions_of = _regions_finder()
    buf = ""
    base = 0  # stream offset of buf[0]
    line_start = 0  # stream offset of the current line
    field = 0  # field index at buf[tracked]
    tracked = 0
    pos = 0
    iterator = iter(pieces)
    final = False
    while not final:
        piece = next(iterator, None)
        if piece is None:
            final = True
        elif not piece:
            continue
        else:
            buf = buf + piece if buf else piece
            piece = None  # one copy of the text at a time
        limit = len(buf) if final else len(buf) - STREAM_MARGIN
        if limit <= pos and not final:
            continue
        end_of_search = pos
        regions = regions_of(buf, pos) if regions_of is not None else None
        search = tagged.search if regions is None else _region_search(tagged, regions)
        for start, detector, raw in _valid_hits(buf, pos, len(buf), limit, search):
            # follow line and field from the last hit to this one
            newline = buf.rfind("\n", tracked, start)
            if newline >= 0:
                line_start = base + newline + 1
                field = buf.count("\t", newline + 1, start)
            else:
                field += buf.count("\t", tracked, start)
            tracked = start
            end_of_search = start + len(raw)
            if detector.CATEGORY not in NOT_PERSONAL:
                yield line_start, field, detector, raw
        if final:
            return
        # keep the tail from which the search resumes (with a little look-behind context)
        pos = max(end_of_search, limit)
        keep = max(0, pos - _LOOK_BEHIND)
        if keep > tracked:  # count the newlines and tabs of the text let go
            newline = buf.rfind("\n", tracked, keep)
            if newline >= 0:
                line_start = base + newline + 1
                field = buf.count("\t", newline + 1, keep)
            else:
                field += buf.count("\t", tracked, keep)
            tracked = keep
        buf = buf[keep:]
        base += keep
        tracked -= keep
        pos -= keep


#: lines of a block looked at to tell which of its columns hold digit runs
DIGIT_COLUMN_PROBE = 256
#: a column is read as digit runs when at least this share of the probed values are digit runs
#: long enough to be an identifier (an ID, a card or a mobile number column)
DIGIT_COLUMN_SHARE = 0.5
_IDENTIFIER_DIGITS = 11  # the shortest plain run of digits the check below pays for
DIGIT_PART_CHARS = 256 << 10  # a piece is blanked in parts of whole lines of about this size
_BLANKS = [" " * n for n in range(64)]


def _digit_run(value: str) -> bool:
    """ASCII digits only, or digits ending in X (a resident ID): every embedded pattern starts a
    token, so a hit in such a value starts at its first character and nothing else can start
    inside it."""
    return value.isascii() and (value.isdigit() or value[-1:] in ("X", "x") and value[:-1].isdigit())


def _probe_lines(block: str) -> list[str]:
    """The first DIGIT_COLUMN_PROBE lines of `block`, as `block.split("\n")` gives them, without
    a copy of the rest of the block (which `split` with a count returns as its last part)."""
    end = -1
    for _ in range(DIGIT_COLUMN_PROBE):
        end = block.find("\n", end + 1)
        if end < 0:
            return block.split("\n")
    return block[:end].split("\n")


def _digit_columns(block: str) -> tuple[int, ...]:
    """Indexes of the fields that, in the first lines of `block`, mostly hold digit runs at least
    as long as the shortest identifier."""
    return _columns_mostly(block, _digit_runs_in)


def _digit_runs_in(values) -> int:
    return sum(map(_digit_run, [v for v in values if len(v) >= _IDENTIFIER_DIGITS]))


def _columns_mostly(block: str, count: Callable) -> tuple[int, ...]:
    """Indexes of the fields that, in the first lines of `block`, hold at least one value of a
    kind and at least DIGIT_COLUMN_SHARE of their values that are not empty or NULL; `count`
    (a sequence of values) -> how many are of the kind (an empty value or a NULL never is)."""
    rows = [line.split("\t") for line in _probe_lines(block) if line]  # an empty line holds nothing
    if not rows:
        return ()
    width = len(rows[0])
    if any(len(row) != width for row in rows):  # lines of different lengths: value by value
        kind: Counter = Counter()
        filled: Counter = Counter()
        for row in rows:
            for i, value in enumerate(row):
                if value and value != "\\N":
                    filled[i] += 1
                    kind[i] += count((value,))
        return tuple(sorted(i for i, n in kind.items() if n and n >= DIGIT_COLUMN_SHARE * filled[i]))
    found = []
    for i, values in enumerate(zip(*rows, strict=True)):  # a column at a time
        n = count(values)
        if n and n >= DIGIT_COLUMN_SHARE * (len(values) - values.count("") - values.count("\\N")):
            found.append(i)
    return tuple(found)


class DigitHits:
    """Hits of one detector in one digit-run column of a part of a stream, in stream order:
    `positions[k]` is the stream offset of the line of the k-th hit, `values[k]` its matched text
    (cut from the part only when asked for: most hits are only counted)."""

    __slots__ = ("detector", "index", "positions", "values")

    def __init__(self, index: int, detector, positions, values) -> None:
        self.index, self.detector, self.positions, self.values = index, detector, positions, values

    def __len__(self) -> int:
        return len(self.positions)

    def tuples(self) -> Iterator[tuple[int, int, object, str]]:
        """(line start, field index, detector, raw) of each hit, as `stream_hits` gives them."""
        for k in range(len(self.positions)):
            yield int(self.positions[k]), self.index, self.detector, self.values[k]


class _Cut:
    """values[k] = text[starts[k]:ends[k]], cut when asked for."""

    __slots__ = ("ends", "starts", "text")

    def __init__(self, text: str, starts, ends) -> None:
        self.text, self.starts, self.ends = text, starts, ends

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, k: int) -> str:
        return self.text[int(self.starts[k]) : int(self.ends[k])]


#: a value that is wholly a plain e-mail address (lower case, starting with a letter that opens no
#: other kind: not p, which may open a passport label): the stream would find in it exactly one
#: hit, the address, from its first character to its last (no other detector matches at a lower
#: case letter but p, and the e-mail pattern's greedy match is the whole value when it is one).
#: Such a value passes `email.is_valid` exactly when its local part has at most 64 characters and
#: its domain at most 253 (the look-ahead): no dot opens, closes or doubles in either
_PLAIN_EMAIL = re.compile(
    r"(?=[^@]{1,64}@[^@]{1,253}\Z)"
    r"[a-oq-z][a-z0-9]*(?:[._-][a-z0-9]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}"
)


def _email_columns(block: str) -> tuple[int, ...]:
    """Indexes of the fields that, in the first lines of `block`, mostly hold plain e-mail
    addresses (`_PLAIN_EMAIL`)."""
    return _columns_mostly(block, _plain_emails_in)


def _plain_emails_in(values) -> int:
    return len(list(filter(None, map(_PLAIN_EMAIL.fullmatch, [v for v in values if "@" in v]))))


def digit_fields(pieces: Iterable[str], on_hits: Callable[[list[DigitHits]], None]) -> Iterator[str]:
    """The pieces of a stream of tab-separated rows (as `stream_hits` takes them), with the values
    of digit-run columns (ID, card and mobile number columns, `_digit_columns`) checked here and
    blanked to spaces of the same length: `stream_hits` over the result, plus the hits handed to
    `on_hits` (a list of `DigitHits` per piece, personal categories only), are the hits of
    `stream_hits` over the pieces as they were. Such a value holds at most one hit, at its start
    (`_digit_run`), found without the candidate search: a column of identifiers is checked a whole
    column at a time (`digit_runs`, with numpy), the rare values those checks do not accept one
    by one, as the stream would. Only pieces of whole lines are looked at (a piece cut inside a
    line passes as it is)."""
    if _tagged_pattern() is None:
        yield from pieces
        return
    base = 0  # stream offset of the piece's first character
    at_line_start = True
    for piece in pieces:
        if not piece:
            continue
        whole = at_line_start and piece.endswith("\n")
        columns = _digit_columns(piece) if whole else ()
        mailboxes = _email_columns(piece) if whole else ()
        at_line_start = piece.endswith("\n")
        if not columns and not mailboxes:
            base += len(piece)
            yield piece
            continue
        # in parts of whole lines: the copies made for blanking stay small beside the piece
        start = 0
        while start < len(piece):
            end = piece.rfind("\n", start, start + DIGIT_PART_CHARS) + 1 or piece.index("\n", start) + 1
            part, hits = _blank_digit_runs(piece[start:end], base, columns, mailboxes)
            if hits:
                on_hits(hits)
            base += len(part)
            start = end
            yield part


def _blank_digit_runs(
    block: str, base: int, columns: tuple[int, ...], mailboxes: tuple[int, ...] = ()
) -> tuple[str, list[DigitHits]]:
    """`block` (whole lines from stream offset `base`) with the digit runs of `columns` blanked,
    and their hits: a whole column at a time when every line has the same number of fields (a
    COPY stream), else line by line. The plain e-mail addresses of the columns `mailboxes` are
    taken out the same way on the first path (on the second the stream finds them)."""
    try:
        import numpy  # noqa: F401
    except ImportError:  # pragma: no cover - numpy is a requirement; without it, line by line
        return _blank_digit_runs_by_line(block, base, columns)
    found = _blank_digit_runs_by_column(block, base, columns, mailboxes)
    return found if found is not None else _blank_digit_runs_by_line(block, base, columns)


def _classify_digit_run(value: str):
    """(detector, raw) of the hit the stream finds at the start of the digit run `value` (the first
    detector in priority order whose pattern matches there and validates), or None."""
    m = _tagged_pattern().match(value)
    if m is None:
        return None
    first, detector, is_valid = _by_group()[m.lastindex]
    raw = m.group()
    if not is_valid(raw):
        claimed = _claim_later(value, 0, first + 1, len(value))
        if claimed is None:
            return None
        detector, _, raw = claimed
    return None if detector.CATEGORY in NOT_PERSONAL else (detector, raw)


def _blank_digit_runs_by_column(
    block: str, base: int, columns: tuple[int, ...], mailboxes: tuple[int, ...] = ()
):
    """`_blank_digit_runs` with numpy, or None when the lines do not all have the same number of
    fields."""
    import numpy as np

    from dereg.classify import cn_mobile, digit_runs

    chars = _code_units(block)
    # tabs and line ends in one pass (few characters are below 11)
    breaks = np.flatnonzero(chars < 11)
    kinds = chars[breaks]
    ends = breaks[kinds == 10]
    if not len(ends) or ends[-1] != len(chars) - 1:
        return None
    lines = len(ends)
    line_starts = np.empty(lines, dtype=np.int64)
    line_starts[0] = 0
    line_starts[1:] = ends[:-1] + 1
    tabs = breaks[kinds == 9]
    if len(tabs) % lines:
        return None
    fields = len(tabs) // lines + 1
    if fields > 1:
        tabs = tabs.reshape(lines, fields - 1)
        if (tabs[:, 0] < line_starts).any() or (tabs[:, -1] > ends).any():
            return None  # some line has more fields than another
    detector_of = {d.CATEGORY: d for d in embedded_detectors()}
    resident_id, bank, mobile = (
        detector_of[cn_resident_id.CATEGORY],
        detector_of[bank_card.CATEGORY],
        detector_of[cn_mobile.CATEGORY],
    )
    blanked: list = []  # arrays of character indexes to blank
    blanked_runs: list = []  # (first character indexes, length) of runs to blank

    def windows(length: int):
        # a read-only view of every run of `length` characters (row i starts at chars[i]): rows
        # of it are copied whole, where an index per character cost twice the time
        return _runs_view(chars, length)

    hits: list[DigitHits] = []
    for index in columns:
        if index >= fields:
            break
        starts = line_starts if index == 0 else tabs[:, index - 1] + 1
        stops = ends if index == fields - 1 else tabs[:, index]
        lengths = stops - starts
        filled = np.flatnonzero(lengths > 0)
        first = chars[starts[filled]]
        filled = filled[(first >= 48) & (first <= 57)]  # a digit run starts with a digit
        one_by_one: list = []  # rows checked value by value
        column_hits: dict[object, list] = {}
        for length in _distinct(lengths[filled]).tolist():
            rows = filled[lengths[filled] == length]
            text = windows(length)[starts[rows]]  # row k: chars[starts[rows[k]] :][:length]
            digit = np.subtract(text, 48, dtype=text.dtype) <= 9  # unsigned: below 48 wraps round
            if length == 1:
                run = digit[:, 0]
                all_digits = run
            else:
                head = digit[:, :-1].all(axis=1)
                all_digits = head & digit[:, -1]
                run = all_digits | head & ((text[:, -1] == 88) | (text[:, -1] == 120))
            if not run.all():
                rows, text, all_digits = rows[run], text[run], all_digits[run]
            if not len(rows):
                continue
            blanked_runs.append((starts[rows], length))
            if length == 18:
                taken = digit_runs.resident_ids(text)
                kind = resident_id
            elif length == 11:
                taken = all_digits & digit_runs.mobiles(text)
                kind = mobile
            elif length in (16, 17, 19):
                if all_digits.all():  # the usual card column: no copy of its rows
                    taken = digit_runs.bank_cards(text)
                else:
                    taken = all_digits.copy()
                    if taken.any():
                        taken[taken] = digit_runs.bank_cards(text[taken])
                kind = bank
            else:
                taken = np.zeros(len(rows), dtype=bool)
                kind = None
            if taken.any():
                column_hits.setdefault(kind, []).append(rows[taken])
            if not taken.all():
                one_by_one.append(rows[~taken])
        if one_by_one:
            for row in _in_order(one_by_one, lines).tolist():
                found = _classify_digit_run(block[starts[row] : stops[row]])
                if found is not None:
                    column_hits.setdefault(found[0], []).append(np.array([row]))
        for detector, parts in column_hits.items():
            rows = _in_order(parts, lines)
            hits.append(
                DigitHits(index, detector, base + line_starts[rows], _Cut(block, starts[rows], stops[rows]))
            )
    mail = detector_of.get("email")
    for index in mailboxes if mail is not None else ():
        if index >= fields:
            break
        if index in columns:
            continue
        starts = line_starts if index == 0 else tabs[:, index - 1] + 1
        stops = ends if index == fields - 1 else tabs[:, index]
        first = chars[starts]
        rows = np.flatnonzero((stops - starts >= 6) & (first >= 97) & (first <= 122) & (first != 112))
        # a plain address `_PLAIN_EMAIL` takes passes `mail.is_valid`; each value is matched in
        # place (its end is the pattern's string end), not cut out
        matched = map(_PLAIN_EMAIL.fullmatch, repeat(block), starts[rows].tolist(), stops[rows].tolist())
        taken = list(compress(rows.tolist(), matched))
        if taken:
            rows = np.array(taken, dtype=np.int64)
            blanked.append(_ranges(starts[rows], stops[rows] - starts[rows]))
            hits.append(
                DigitHits(index, mail, base + line_starts[rows], _Cut(block, starts[rows], stops[rows]))
            )
    if not blanked and not blanked_runs:
        return block, hits
    spaced = chars.copy()
    if blanked:
        spaced[np.concatenate(blanked)] = 32
    for firsts, length in blanked_runs:
        # every character of the runs of `length` that start at `firsts`, through a writable
        # view of overlapping windows: each is set to the same space
        _runs_view(spaced, length)[firsts] = 32
    return _text_of(spaced, len(block)), hits


def _runs_view(chars, length: int):
    """A view of `chars` (one-dimensional, contiguous) with a row for every run of `length` items,
    row i starting at chars[i]; writable when `chars` is (the rows overlap: what is written
    through one row is seen in the others). `sliding_window_view`, without its checks (their
    cost counted where a block has many columns and lengths)."""
    import numpy as np

    return np.ndarray(
        (len(chars) - length + 1, length), chars.dtype, chars, strides=(chars.itemsize, chars.itemsize)
    )


def _code_units(text: str):
    """`text` as an array of one number per character: UTF-16 code units (half the bytes of
    UTF-32 to encode, compare, copy and decode) when every character is in the Basic
    Multilingual Plane, else code points."""
    import numpy as np

    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) == 2 * len(text):  # no character needed two units
        return np.frombuffer(units, dtype=np.uint16)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _text_of(chars, length: int) -> str:
    """The text of `length` characters that `chars` (from `_code_units`) holds."""
    import numpy as np

    if chars.dtype == np.uint32:
        return chars.tobytes().decode("utf-32-le", "surrogatepass")
    text = chars.tobytes().decode("utf-16-le", "surrogatepass")
    if len(text) != length:  # a lone high surrogate before a lone low one read as one character
        text = chars.astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")
    return text


def _distinct(lengths):
    """The distinct values of `lengths` (positive ints), ascending: `np.unique`, counted instead of
    sorted (a tenth of the time for a block's lines) unless a value is very long."""
    import numpy as np

    if not len(lengths) or lengths.max() > 1 << 16:
        return np.unique(lengths)
    return np.flatnonzero(np.bincount(lengths))


def _in_order(parts: list, lines: int):
    """The rows of `parts` (arrays of distinct line numbers below `lines`, none in two parts), in
    one ascending array: `np.sort(np.concatenate(parts))`, marked instead of sorted."""
    import numpy as np

    marked = np.zeros(lines, dtype=bool)
    for rows in parts:
        marked[rows] = True
    return np.flatnonzero(marked)


def _ranges(starts, lengths):
    """The indexes of every range [starts[k], starts[k] + lengths[k]), in one array."""
    import numpy as np

    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


def _blank_digit_runs_by_line(block: str, base: int, columns: tuple[int, ...]) -> tuple[str, list[DigitHits]]:
    """`_blank_digit_runs` one line and one value at a time. A digit run's hit is what the
    stream's search finds at its first character (`_classify_digit_run`)."""
    found: dict[tuple[int, object], tuple[list, list]] = {}
    blanks = _BLANKS
    lines = block.split("\n")
    last = lines.pop()  # "" after the final line end
    out = []
    keep = out.append
    line_start = base
    for line in lines:
        fields = line.split("\t")
        changed = False
        for i in columns:
            if i >= len(fields):
                break
            value = fields[i]
            if not (
                value and value.isascii() and (value.isdigit() or value[-1] in "Xx" and value[:-1].isdigit())
            ):
                continue
            fields[i] = blanks[len(value)] if len(value) < len(blanks) else " " * len(value)
            changed = True
            hit = _classify_digit_run(value)
            if hit is not None:
                positions, values = found.setdefault((i, hit[0]), ([], []))
                positions.append(line_start)
                values.append(hit[1])
        keep("\t".join(fields) if changed else line)
        line_start += len(line) + 1
    out.append(last)
    hits = [DigitHits(i, detector, positions, values) for (i, detector), (positions, values) in found.items()]
    return "\n".join(out), hits


def native_patterns() -> tuple[re.Pattern, ...]:
    """What the native candidate search looks for, per embedded detector: its CANDIDATE when it
    has one (the matches of its PATTERN that its `is_valid` can accept, or more), else its PATTERN.
    A match of PATTERN outside every region is then one its detector rejects; the scanner would
    have gone on from its next character, as it does when no region holds it."""
    return tuple(getattr(d, "CANDIDATE", None) or d.PATTERN for d in embedded_detectors())


@lru_cache(maxsize=1)
def _regions_finder():
    """The native candidate search over the embedded detectors' patterns, or None (use `re`)."""
    from dereg.classify import native

    return native.regions_finder(native_patterns())


@lru_cache(maxsize=256)
def _tagged_subset(mask: int) -> re.Pattern:
    """The tagged pattern with only the detectors whose bit is set in `mask`: every other
    detector's alternative fails at once (`(?!)` before it), its groups keep their numbers and
    `Match.lastindex` still names the detector. Where the others cannot match (the native search
    says so per region) it finds exactly what the whole pattern finds, without trying the long
    alternatives of the kinds absent there (a list of health terms, of account labels)."""
    detectors = embedded_detectors()
    parts = [
        f"(?P<_d{i}>{'' if mask >> i & 1 else '(?!)'}{_scoped(d.PATTERN)})" for i, d in enumerate(detectors)
    ]
    return re.compile(_TOKEN_START + "(?:" + "|".join(parts) + ")")


def _region_search(tagged: re.Pattern, regions: list[tuple[int, int, int]]):
    """A drop-in for `tagged.search(buf, pos, endpos)` that looks only inside `regions` (the
    native search's ranges where a candidate may start and end, in order, with the detectors that
    may match there), for calls with a growing `pos`. Inside a region the pattern of those
    detectors runs on the text cut at the region's end (every candidate ending there is found,
    and Python never reads past it); the candidate is then matched again on the whole text, so
    look-aheads see what follows and the result is exactly what `tagged.search` would return."""
    count = len(regions)
    index = 0

    def next_match(buf: str, pos: int, endpos: int) -> re.Match | None:
        nonlocal index
        while index < count:
            begin, end, mask = regions[index]
            if end <= pos:
                index += 1
                continue
            next_match.mask = mask  # type: ignore[attr-defined]
            pattern = _tagged_subset(mask)
            search, match = pattern.search, pattern.match
            if 0 < begin and pos <= begin + 1 < endpos:
                # A region after the text's start begins with the non-token character before its
                # first candidate: no match starts at `begin` (its candidate would have widened
                # the region to the left), so a match at begin + 1 is the leftmost one. Most
                # regions hold one candidate right there: one `match` instead of two calls.
                first = match(buf, begin + 1, endpos)
                if first is not None:
                    return first
                at = begin + 2
            else:
                at = begin if begin > pos else pos
            while (m := search(buf, at, end if end < endpos else endpos)) is not None:
                real = match(buf, m.start(), endpos)
                if real is not None:
                    return real
                at = m.start() + 1
            index += 1
        return None

    next_match.mask = -1  # type: ignore[attr-defined]
    return next_match


@lru_cache(maxsize=1)
def _by_group() -> list[tuple[int, object, object]]:
    """`Match.lastindex` of the tagged pattern -> (detector index, detector, its is_valid)."""
    detectors = embedded_detectors()
    table: list = [None] * (_tagged_pattern().groups + 1)
    for name, index in _tagged_pattern().groupindex.items():
        if name.startswith("_d"):
            i = int(name[2:])
            table[index] = (i, detectors[i], detectors[i].is_valid)
    return table


def _valid_hits(buf: str, pos: int, endpos: int, limit: int, search) -> Iterator[tuple[int, object, str]]:
    """(start, detector, raw) of each valid hit in buf[pos:endpos] that starts before `limit`, in
    order. A hit whose text runs across a tab or newline is dropped and its field searched alone."""
    by_group = _by_group()
    while (m := search(buf, pos, endpos)) is not None:
        start = m.start()
        if start >= limit:
            return
        first, detector, is_valid = by_group[m.lastindex]
        raw = m.group()
        if is_valid(raw):  # the common case, inline: the matched detector takes it
            end = m.end()
        else:
            # the region the match came from says which later detectors may match there
            claimed = _claim_later(buf, start, first + 1, endpos, getattr(search, "mask", -1))
            if claimed is None:
                pos = start + 1
                continue
            detector, end, raw = claimed
        if "\t" in raw or "\n" in raw:
            # a pattern that ran across fields: search this field on its own (its end is a string
            # end for the patterns' look-aheads, as when a value is scanned alone)
            tab, newline = buf.find("\t", start, end), buf.find("\n", start, end)
            field_end = min(i for i in (tab, newline) if i >= 0)
            yield from _valid_hits(buf, start, field_end, field_end, _tagged_pattern().search)
            pos = field_end
            continue
        yield start, detector, raw
        pos = end


def _scan_block_by_field(block: str) -> Iterator[tuple[int, int, str, str]]:
    """scan_block the slow way: every line with a candidate split into fields, each field scanned."""
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
