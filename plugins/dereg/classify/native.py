"""The native candidate search: where in a text any embedded detector could match, found by
Hyperscan (the `hyperscan` package) instead of Python's `re` trying every position.

Hyperscan has no look-behind or look-ahead, so each detector's pattern is translated into a
looser one (`hs_expression`): look-arounds are dropped, a final "not followed by a token
character" becomes "followed by a non-token character or the end", and every expression starts
with a non-token character or the start of the text (every embedded kind starts a token). The
looser patterns match wherever the real ones do, and more. Their matches, merged where they
overlap, are the *regions* of a text; the scanner then runs Python's pattern only inside
regions, where the exact look-behind and boundary checks decide. Text outside every region cannot
hold a candidate and is never seen by Python. The expressions run over the text's UTF-8 bytes in
Hyperscan's byte mode (`_byte_expression`), where the token start in front of each is one byte.

Without the package (or with `DEREG_NATIVE_SCAN=0`, or when a detector's pattern cannot be
translated) `regions_finder()` is None and the scanner searches with `re` alone; findings are the
same either way (tests/unit/classify/test_native.py compares them).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

log = logging.getLogger(__name__)

#: every embedded kind starts a token: no identifier begins right after one of these
_TOKEN = "0-9A-Za-z_"

#: (text, start) -> regions, or None when this text must be searched with `re`
_WIDE_REPEAT = re.compile(r"\{(\d+),(\d{2,})\}")

RegionsFinder = Callable[[str, int], list[tuple[int, int, int]] | None]


class Untranslatable(ValueError):
    """A pattern uses a construct the translation does not handle (a back-reference...)."""


def _group_end(pattern: str, i: int) -> int:
    """Index just after the parenthesis closing the group that opens at pattern[i]."""
    depth = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _class_end(pattern, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise Untranslatable("unbalanced parenthesis")


def _class_end(pattern: str, i: int) -> int:
    """Index just after the character class that opens at pattern[i]."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern[j] == "]":
            return j + 1
        j += 1
    raise Untranslatable("unterminated character class")


def _unicode_ranges(pattern: str) -> list[tuple[int, int]]:
    """The runs of non-ASCII code points that `pattern` (one character class) matches."""
    everything = "".join(map(chr, range(0x80, 0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))
    ranges = []
    for m in re.finditer(pattern + "+", everything):
        first, last = ord(m.group()[0]), ord(m.group()[-1])
        if last - first + 1 == len(m.group()):
            ranges.append((first, last))
        else:  # a run across the surrogate gap: its code points are not consecutive
            ranges += [(ord(c), ord(c)) for c in m.group()]
    return ranges


def _class_body(ranges) -> str:
    return "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)


# Python's \s beyond ASCII (`_unicode_ranges(r"\s")`; test_native checks it against this
# Python's Unicode tables).
#: Python's \s takes the ideographic space and a few more: so does the translation of \s
UNICODE_SPACE_RANGES = (
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)
UNICODE_SPACE = "\\s" + _class_body(UNICODE_SPACE_RANGES)


def _escape(pattern: str, i: int, in_class: bool = False) -> tuple[str, int]:
    """(Hyperscan spelling, next index) of the escape at pattern[i]."""
    c = pattern[i + 1] if i + 1 < len(pattern) else ""
    if c == "d":  # a text holding another digit goes to `re` (`_OTHER_DIGIT`)
        return ("0-9" if in_class else "[0-9]"), i + 2
    if c == "s":
        return (UNICODE_SPACE if in_class else f"[{UNICODE_SPACE}]"), i + 2
    if c in "DSwWbB":
        raise Untranslatable(f"escape \\{c}")
    if c in ("u", "U"):
        width = 4 if c == "u" else 8
        code = pattern[i + 2 : i + 2 + width]
        return "\\x{" + code + "}", i + 2 + width
    if c == "Z":  # Python's \Z is the very end, PCRE's \z
        return "\\z", i + 2
    if c == "N" or c.isdigit() and c != "0":
        raise Untranslatable(f"escape \\{c}")
    return pattern[i : i + 2], i + 2


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            text, i = _escape(pattern, i)
            out.append(text)
        elif c == "[":
            end = _class_end(pattern, i)
            body = pattern[i:end]
            parts, j = [], 0
            while j < len(body):
                if body[j] == "\\":
                    text, j = _escape(body, j, in_class=True)
                    parts.append(text)
                else:
                    parts.append(body[j])
                    j += 1
            out.append("".join(parts))
            i = end
        elif pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            end = _group_end(pattern, i)
            inner = pattern[i + 3 : end - 1]
            # a final "not followed by [class]": followed by another character, or the end
            final = end == n or pattern[end] in "|)"
            if (
                pattern.startswith("(?!", i)
                and final
                and inner.startswith("[")
                and _class_end(inner, 0) == len(inner)
            ):
                negated = inner[2:] if inner.startswith("[^") else "^" + inner[1:]
                out.append(f"(?:[{_translate(negated)}|\\z)")
            i = end  # any other look-around is dropped: the pattern only gets looser
        elif pattern.startswith("(?P<", i):
            out.append("(?:")
            i = pattern.index(">", i) + 1
        elif pattern.startswith("(?P=", i) or pattern.startswith("(?(", i):
            raise Untranslatable("back-reference or conditional")
        elif c == "{" and (wide := _WIDE_REPEAT.match(pattern, i)):
            # {1,64}: Hyperscan tracking match starts cannot carry wide counted repeats; {1,} is looser
            out.append("{" + wide.group(1) + ",}")
            i = wide.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def hs_expression(pattern: re.Pattern) -> str:
    """A Hyperscan expression that matches wherever `pattern` matches at a token start, from the
    character before it (or the start of the text) to its end or one character past it.

    >>> hs_expression(re.compile(r"(?<![0-9A-Za-z_])\\d{15}(?![0-9A-Za-z_])"))
    '(?:^|[^0-9A-Za-z_])(?:[0-9]{15}(?:[^0-9A-Za-z_]|\\\\z))'
    """
    if pattern.flags & (re.VERBOSE | re.IGNORECASE) or "(?i" in pattern.pattern or "(?x" in pattern.pattern:
        raise Untranslatable("verbose or case-insensitive pattern")
    return f"(?:^|[^{_TOKEN}])(?:{_translate(pattern.pattern)})"


#: consecutive expressions are joined into one while the joined text stays this short: Hyperscan
#: then reports each stretch of digits once instead of once per kind that fits it (a card, an ID
#: and a mobile all fit a long number), and the reports are Python calls. Longer joins cost more
#: to compile than they save, and the longest are refused ("Pattern is too large").
GROUP_CHARS = 400
_LEAD = f"(?:^|[^{_TOKEN}])"


def _groups(expressions: Sequence[str]) -> list[list[int]]:
    """Indexes of `expressions` joined into one Hyperscan expression each, in order."""
    groups: list[list[int]] = []
    size = 0
    for i, expression in enumerate(expressions):
        if groups and size + len(expression) <= GROUP_CHARS:
            groups[-1].append(i)
            size += len(expression)
        else:
            groups.append([i])
            size = len(expression)
    return groups


def _joined(expressions: Sequence[str], group: list[int]) -> str:
    """One expression matching wherever one of the group's does (each starts with `_LEAD`)."""
    if len(group) == 1:
        return expressions[group[0]]
    return _LEAD + "(?:" + "|".join(expressions[i][len(_LEAD) :] for i in group) + ")"


#: one character beyond ASCII in UTF-8, whole (Hyperscan's byte mode)
_ONE_NON_ASCII = r"(?:[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3})"
#: a class may hold at most this many characters beyond ASCII in byte mode (each spelled out)
_CLASS_POINTS = 512


def _utf8(char: str) -> str:
    """`char` as the escaped UTF-8 bytes of a byte-mode expression, grouped (a repeat after it
    then repeats the whole character, not its last byte)."""
    if ord(char) < 0x80:
        return re.escape(char) if char not in "-" else "\\-"
    return "(?:" + "".join(f"\\x{b:02x}" for b in char.encode("utf-8")) + ")"


def _escaped_char(expression: str, i: int) -> tuple[str | None, int]:
    """(the character, next index) of a \\x{...} or \\xHH escape at expression[i], else (None, i)."""
    if expression.startswith("\\x{", i):
        end = expression.index("}", i)
        return chr(int(expression[i + 3 : end], 16)), end + 1
    if expression.startswith("\\x", i) and re.fullmatch("[0-9A-Fa-f]{2}", expression[i + 2 : i + 4]):
        return chr(int(expression[i + 2 : i + 4], 16)), i + 4
    return None, i


def _byte_class(body: str, negated: bool) -> str:
    """The byte-mode spelling of the class [body] (or [^body]): its ASCII part as a class, each
    character beyond ASCII as its bytes, all in one alternation."""
    ascii_part: list[str] = []
    points: list[str] = []
    i, n = 0, len(body)

    def member(i: int) -> tuple[str | None, int]:
        """(a character, next index), or (None, next index) for an escape kept as it is (\\s)."""
        char, j = _escaped_char(body, i)
        if char is not None:
            return char, j
        if body[i] == "\\":
            return None, i + 2
        return body[i], i + 1

    while i < n:
        char, j = member(i)
        if char is None:  # \\s, \\-, \\]...: ASCII
            ascii_part.append(body[i:j])
            i = j
            continue
        if j + 1 < n and body[j] == "-":
            last, k = member(j + 1)
            if last is not None:
                low, high = ord(char), ord(last)
                if low < 0x80:
                    ascii_part.append(_utf8(char) + "-" + _utf8(chr(min(high, 0x7F))))
                points += map(chr, range(max(low, 0x80), high + 1))
                i = k
                continue
        if ord(char) < 0x80:
            ascii_part.append(_utf8(char))
        else:
            points.append(char)
        i = j
    points = list(dict.fromkeys(points))
    if negated:
        if points:
            raise Untranslatable("negated class holding characters beyond ASCII")
        return "(?:[^" + "".join(ascii_part) + "\\x80-\\xff]|" + _ONE_NON_ASCII + ")"
    if len(points) > _CLASS_POINTS:
        raise Untranslatable("class of too many characters beyond ASCII")
    if not points:
        return "[" + "".join(ascii_part) + "]"
    alternatives = (["[" + "".join(ascii_part) + "]"] if ascii_part else []) + [_utf8(p) for p in points]
    return "(?:" + "|".join(alternatives) + ")"


def _byte_expression(expression: str) -> str:
    """`expression` (an `hs_expression`, for Hyperscan's UTF-8 mode) for its byte mode, where the
    search runs about twice as fast over Chinese text: each character beyond ASCII spelled as its
    UTF-8 bytes, a class holding some as an alternation, a negated class as any other character
    whole. Only the lead stays one byte: before a match it is the last byte of the character
    before (every byte of a character beyond ASCII is outside the token class), so a match reported
    from inside a character starts its region at that character (`_finder`). Untranslatable: a
    negated class holding characters beyond ASCII, a `.`, a class of very many characters."""
    if not expression.startswith(_LEAD):
        raise Untranslatable("an expression without the lead")
    out = [_LEAD]
    i, n = len(_LEAD), len(expression)
    while i < n:
        c = expression[i]
        char, j = _escaped_char(expression, i)
        if char is not None:
            out.append(_utf8(char))
            i = j
        elif c == "\\":
            out.append(expression[i : i + 2])
            i += 2
        elif c == "[":
            end = _class_end(expression, i)
            negated = expression.startswith("[^", i)
            out.append(_byte_class(expression[i + (2 if negated else 1) : end - 1], negated))
            i = end
        elif c == ".":
            raise Untranslatable("any character")
        else:
            out.append(_utf8(c) if ord(c) >= 0x80 else c)
            i += 1
    return "".join(out)


def _compile(patterns: Sequence[re.Pattern]):
    """The database of `patterns`, per expression id the bit mask of the patterns it stands for, and
    whether it runs in byte mode (`_byte_expression`): from the compiled-database cache when it
    holds them (`_cached`), else compiled and cached."""
    import hyperscan  # noqa: F401 - without the package: ImportError, no native search

    expressions = [hs_expression(p) for p in patterns]
    cache = _cache_file(expressions)
    cached = _cached(cache)
    if cached is not None:
        return cached
    database, masks, lead_bytes = _compiled(expressions)
    _store(cache, database, masks, lead_bytes)
    return database, masks, lead_bytes


#: compiled databases are kept here, in the state folder, by a digest of what they were built from
CACHE_FOLDER = "hyperscan"
#: how the expressions are compiled (changed with it, so an older cache file is not read)
_SPELLING = "bytes, one-byte lead"


def _cache_file(expressions: Sequence[str]):
    """Where the database of `expressions` is cached: named by a digest of the expressions, the
    join rule, the Hyperscan version and the machine (a database runs only where it was built)."""
    import hashlib
    import platform

    import hyperscan

    from dereg.config import state_dir

    key = repr((expressions, GROUP_CHARS, _LEAD, _SPELLING, hyperscan.__version__, platform.machine()))
    return state_dir() / CACHE_FOLDER / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.db"


def _cached(path):
    """(database, masks, lead_bytes) from the cache file, or None (none yet, unreadable, or built
    for a CPU this one is not: then it is compiled again)."""
    import json

    import hyperscan

    try:
        # the masks and the mode as one line of JSON, then Hyperscan's own serialised form (no
        # pickle: a file is never code)
        head, _, blob = path.read_bytes().partition(b"\n")
        layout = json.loads(head)
        masks, lead_bytes = layout["masks"], layout["lead_bytes"]
        database = hyperscan.loadb(blob, hyperscan.HS_MODE_BLOCK)
        database.scratch = hyperscan.Scratch(database)
    except Exception:  # noqa: BLE001 - any problem with the cache means: compile
        return None
    if (
        not isinstance(masks, list)
        or not all(isinstance(m, int) for m in masks)
        or not isinstance(lead_bytes, bool)
    ):
        return None
    return database, tuple(masks), lead_bytes


def _store(path, database, masks: tuple[int, ...], lead_bytes: bool) -> None:
    """Write the cache file whole or not at all (another process may be reading or writing it);
    a folder that cannot be written only means compiling next time."""
    import json
    import tempfile

    import hyperscan

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".tmp") as tmp:
            head = json.dumps({"masks": list(masks), "lead_bytes": lead_bytes})
            tmp.write(head.encode() + b"\n" + hyperscan.dumpb(database))
        os.replace(tmp.name, path)
    except OSError as exc:
        log.info("compiled candidate search not cached (%s)", type(exc).__name__)


def _compiled(expressions: Sequence[str]):
    """(database, masks, lead_bytes): in byte mode (`_byte_expression`) where every expression
    translates, else in UTF-8 mode."""
    import hyperscan

    try:
        spelled = [_byte_expression(e) for e in expressions]
        flags, lead_bytes = hyperscan.HS_FLAG_SOM_LEFTMOST, True
    except Untranslatable:
        spelled = list(expressions)
        flags, lead_bytes = hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_SOM_LEFTMOST, False
    groups = _groups(expressions)  # joined as the UTF-8 spellings' lengths say
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        joined = [_joined(spelled, g).encode() for g in groups]
        database.compile(expressions=joined, ids=list(range(len(joined))), flags=[flags] * len(joined))
    except hyperscan.error:  # a join Hyperscan refuses: one expression per pattern
        groups = [[i] for i in range(len(expressions))]
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        database.compile(
            expressions=[e.encode() for e in spelled],
            ids=list(range(len(spelled))),
            flags=[flags] * len(spelled),
        )
    return database, _masks(groups), lead_bytes


def _masks(groups: list[list[int]]) -> tuple[int, ...]:
    return tuple(sum(1 << i for i in g) for g in groups)


def enabled() -> bool:
    """Whether the native search may be used: `DEREG_NATIVE_SCAN=0` turns it off."""
    return os.environ.get("DEREG_NATIVE_SCAN", "1") not in ("0", "false", "no", "off")


#: compiled databases handed over by a parent process (`export` there, `preload` here), by expressions
_PRELOADED: dict[tuple[str, ...], tuple[bytes, tuple[int, ...], bool]] = {}


def export(
    patterns: tuple[re.Pattern, ...],
) -> tuple[tuple[str, ...], tuple[bytes, tuple[int, ...], bool]] | None:
    """The compiled database of `patterns`, serialised for a worker process (compiling takes a
    second or two; loading, milliseconds); None when there is no native search or when the
    database is in the cache folder, where the worker finds it."""
    finder = regions_finder(patterns)
    if finder is None:
        return None
    if _cached(_cache_file([hs_expression(p) for p in patterns])) is not None:
        # the worker loads it from the cache file too: nothing to hand over (a pool's start
        # waits until each process has read what it is handed, about a megabyte here)
        return None
    import hyperscan

    return tuple(p.pattern for p in patterns), (
        hyperscan.dumpb(finder.database),
        finder.masks,
        finder.lead_bytes,
    )


def preload(exported: tuple[tuple[str, ...], tuple[bytes, tuple[int, ...], bool]] | None) -> None:
    """In a worker: use the database `export` gave instead of compiling it again."""
    if exported is not None:
        _PRELOADED[exported[0]] = exported[1]


@lru_cache(maxsize=4)
def regions_finder(patterns: tuple[re.Pattern, ...]) -> RegionsFinder | None:
    """A function (text, start) -> sorted, disjoint (start, end, mask) character ranges of `text`
    from `start` on, outside which none of `patterns` matches at a token start; bit i of `mask` is
    set when patterns[i] may match inside the range (its expression, or a joined one that holds
    it, matched there: a pattern whose bit is clear cannot match there). It returns None for a
    text to search with `re` (one holding a digit Hyperscan's 0-9 does not cover, or a lone
    surrogate). None instead of a function when Hyperscan is not installed, turned off, or cannot
    take a pattern: the caller then searches with `re`."""
    if not enabled() or not patterns:
        return None
    try:
        preloaded = _PRELOADED.get(tuple(p.pattern for p in patterns))
        if preloaded is not None:
            import hyperscan

            blob, masks, lead_bytes = preloaded
            database = hyperscan.loadb(blob, hyperscan.HS_MODE_BLOCK)
            database.scratch = hyperscan.Scratch(database)
        else:
            database, masks, lead_bytes = _compile(patterns)
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 - any compile failure means: no shortcut, still correct
        log.info("native candidate search off (%s); scanning with Python re", type(exc).__name__)
        return None
    return _finder(database, masks, lead_bytes)


#: a digit Python's \d takes and Hyperscan's [0-9] does not: such a text is searched with `re`
#: (tested in Python: as a Hyperscan expression this class cost more than the whole search)
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")
#: the code points of _OTHER_DIGIT (`_unicode_ranges(r"\d")` beyond ASCII; test_native checks them
#: against this Python's Unicode tables): a text is looked up in a table of them with numpy, three
#: times quicker than the search above
OTHER_DIGIT_RANGES = (
    (0x660, 0x669), (0x6F0, 0x6F9), (0x7C0, 0x7C9), (0x966, 0x96F), (0x9E6, 0x9EF), (0xA66, 0xA6F),
    (0xAE6, 0xAEF), (0xB66, 0xB6F), (0xBE6, 0xBEF), (0xC66, 0xC6F), (0xCE6, 0xCEF), (0xD66, 0xD6F),
    (0xDE6, 0xDEF), (0xE50, 0xE59), (0xED0, 0xED9), (0xF20, 0xF29), (0x1040, 0x1049), (0x1090, 0x1099),
    (0x17E0, 0x17E9), (0x1810, 0x1819), (0x1946, 0x194F), (0x19D0, 0x19D9), (0x1A80, 0x1A89),
    (0x1A90, 0x1A99), (0x1B50, 0x1B59), (0x1BB0, 0x1BB9), (0x1C40, 0x1C49), (0x1C50, 0x1C59),
    (0xA620, 0xA629), (0xA8D0, 0xA8D9), (0xA900, 0xA909), (0xA9D0, 0xA9D9), (0xA9F0, 0xA9F9),
    (0xAA50, 0xAA59), (0xABF0, 0xABF9), (0xFF10, 0xFF19), (0x104A0, 0x104A9), (0x10D30, 0x10D39),
    (0x11066, 0x1106F), (0x110F0, 0x110F9), (0x11136, 0x1113F), (0x111D0, 0x111D9), (0x112F0, 0x112F9),
    (0x11450, 0x11459), (0x114D0, 0x114D9), (0x11650, 0x11659), (0x116C0, 0x116C9), (0x11730, 0x11739),
    (0x118E0, 0x118E9), (0x11950, 0x11959), (0x11C50, 0x11C59), (0x11D50, 0x11D59), (0x11DA0, 0x11DA9),
    (0x16A60, 0x16A69), (0x16AC0, 0x16AC9), (0x16B50, 0x16B59), (0x1D7CE, 0x1D7FF), (0x1E140, 0x1E149),
    (0x1E2F0, 0x1E2F9), (0x1E950, 0x1E959), (0x1FBF0, 0x1FBF9),
)  # fmt: skip


def _other_digit_expressions() -> list[bytes]:
    """Hyperscan expressions, without its UTF-8 mode, for the UTF-8 bytes of OTHER_DIGIT_RANGES:
    per leading bytes, the last bytes that complete a digit (`\\xd9[\\xa0-\\xa9]` for U+0660-0669).
    A match in text encoded to UTF-8 starts at a character (a leading byte is never a
    continuation byte), so there is one exactly where the text holds such a digit."""
    last_bytes: dict[bytes, list[int]] = {}
    for first, last in OTHER_DIGIT_RANGES:
        for point in range(first, last + 1):
            encoded = chr(point).encode("utf-8")
            last_bytes.setdefault(encoded[:-1], []).append(encoded[-1])
    return [
        b"".join(b"\\x%02x" % byte for byte in lead) + b"[" + b"".join(b"\\x%02x" % x for x in ends) + b"]"
        for lead, ends in last_bytes.items()
    ]


@lru_cache(maxsize=1)
def _other_digit_search():
    """A function UTF-8 bytes -> whether they hold a digit of OTHER_DIGIT_RANGES, by Hyperscan
    over the bytes (a few ms per 10 MB: the text is not encoded again as code points); None when
    it cannot be built (`_code_points` then decides). Compiled once per process, from the cache
    folder when it is there."""
    import hyperscan

    expressions = _other_digit_expressions()
    cache = _cache_file([e.decode("latin-1") for e in expressions])
    cached = _cached(cache)
    if cached is not None:
        database = cached[0]
    else:
        try:
            database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            database.compile(
                expressions=expressions,
                ids=list(range(len(expressions))),
                flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(expressions),
            )
            database.scratch = hyperscan.Scratch(database)
        except Exception as exc:  # noqa: BLE001 - without it, the code points decide as before
            log.info("digit search over bytes off (%s)", type(exc).__name__)
            return None
        _store(cache, database, (), False)

    def holds_other_digit(data: bytes) -> bool:
        found: list[bool] = []

        def on_match(*_args) -> bool:
            found.append(True)
            return True  # the first one is enough: the scan stops

        try:
            database.scan(data, match_event_handler=on_match)
        except hyperscan.ScanTerminated:
            pass
        return bool(found)

    return holds_other_digit


@lru_cache(maxsize=1)
def _other_digit_table():
    """A table by code point: True for the digits of OTHER_DIGIT_RANGES; None without numpy."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a requirement
        return None
    table = np.zeros(0x110000, dtype=bool)
    for first, last in OTHER_DIGIT_RANGES:
        table[first : last + 1] = True
    return table


def _code_points(text: str, origin: int):
    """text[origin:] as a numpy array of code points, with whether one of them is a digit beyond
    ASCII; (None, None) without numpy."""
    table = _other_digit_table()
    if table is None:  # pragma: no cover
        return None, None
    import numpy as np

    points = np.frombuffer(text[origin:].encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return points, bool(table[points].any())


def _other_digit(text: str, origin: int, data: bytes) -> bool:
    """Whether text[origin:] (`data` in UTF-8) holds a digit beyond ASCII (`_OTHER_DIGIT`)."""
    search = _other_digit_search()
    if search is not None:
        return search(data)
    points, other_digit = _code_points(text, origin)
    return other_digit if points is not None else _OTHER_DIGIT.search(text, origin) is not None


def _char_offsets(points, bounds: list[int]) -> list[int]:
    """Character offsets of the UTF-8 byte offsets `bounds` (each at a character's start) in the
    text whose code points are `points`."""
    import numpy as np

    widths = 1 + (points >= 0x80).astype(np.int64) + (points >= 0x800) + (points >= 0x10000)
    starts = np.zeros(len(points) + 1, dtype=np.int64)
    np.cumsum(widths, out=starts[1:])
    return np.searchsorted(starts, bounds).tolist()


def _finder(database, masks: tuple[int, ...], lead_bytes: bool = False) -> RegionsFinder:
    def regions(text: str, start: int = 0) -> list[tuple[int, int, int]] | None:
        # from the character before `start`, so the leading non-token test sees the real text
        origin = max(start - 1, 0)
        try:
            data = text[origin:].encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8, which Hyperscan's mode requires
            return None
        ascii_only = text.isascii()
        if not ascii_only and _other_digit(text, origin, data):
            return None
        spans: list[tuple[int, int, int]] = []
        add = spans.append

        def on_match(expression: int, begin: int, end: int, _flags: int, _context: object) -> None:
            add((begin, end, expression))

        database.scan(data, match_event_handler=on_match)
        if not spans:
            return []
        spans.sort()
        merged: list[list[int]] = []
        for begin, end, expression in spans:
            if merged and begin <= merged[-1][1]:
                last = merged[-1]
                if end > last[1]:
                    last[1] = end
                last[2] |= masks[expression]
            else:
                merged.append([begin, end, masks[expression]])
        if ascii_only:
            return [(origin + b, origin + e, m) for b, e, m in merged]
        # in byte mode a region after the text's start begins with the lead's one byte, the last
        # byte of the character before its first candidate: its bound is taken at the candidate
        # (where a character starts) and the region starts one character before
        shift = 1 if lead_bytes else 0
        out: list[tuple[int, int, int]] = []
        points = _code_points(text, origin)[0] if len(merged) > (len(text) - origin) >> 7 else None
        if points is not None:
            # many ranges (a column of e-mail addresses): byte offsets to character offsets all at
            # once, for about 7 ns a character; the loop below costs about 1 µs a range
            offsets = _char_offsets(
                points, [bound for b, e, _ in merged for bound in ((b + shift if b else 0), e)]
            )
            for i, (b, _, m) in enumerate(merged):
                begin, end = origin + offsets[2 * i] - (shift if b else 0), origin + offsets[2 * i + 1]
                if out and begin <= out[-1][1]:  # byte mode: apart in bytes, touching in characters
                    out[-1] = (out[-1][0], end, out[-1][2] | m)
                else:
                    out.append((begin, end, m))
            return out
        # byte offsets to character offsets, one forward pass over the ranges' bounds
        chars = byte = 0
        for b, e, m in merged:
            at = b + shift if b else 0
            chars += len(data[byte:at].decode("utf-8"))
            begin = origin + chars - (shift if b else 0)
            chars += len(data[at:e].decode("utf-8"))
            byte = e
            if out and begin <= out[-1][1]:  # byte mode: apart in bytes, touching in characters
                out[-1] = (out[-1][0], origin + chars, out[-1][2] | m)
            else:
                out.append((begin, origin + chars, m))
        return out

    regions.database = database  # type: ignore[attr-defined]
    regions.masks = masks  # type: ignore[attr-defined]
    regions.lead_bytes = lead_bytes  # type: ignore[attr-defined]
    return regions
