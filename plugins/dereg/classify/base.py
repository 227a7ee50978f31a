"""The verbs every detector shares, written once: `finditer` and `find`.

A detector module states what its kind of personal data looks like (PATTERN, compact, is_valid,
mask) and builds its two search verbs here from them, so that every detector searches text the
same way. Two shapes exist: detectors that find values inside free text (`in_text`: every match
of the pattern that the detector accepts) and detectors that recognise only a whole value, such as
names, addresses and dates, which are too ambiguous inside a remark (`whole_value`).

>>> import re
>>> finditer = in_text(re.compile(r"\\d{3}"), accept=lambda s: s != "000", compact=lambda s: s + "!")
>>> list(finditer("a 123 b 000 c 456"))
[(2, 5, '123!'), (14, 17, '456!')]
>>> find_with(finditer)("123 and 456")
['123!', '456!']
>>> list(whole_value(accept=str.isdigit, compact=str.strip)(" 42 "))
[]
>>> list(whole_value(accept=str.isalpha, compact=str.upper)("abc"))
[(0, 3, 'ABC')]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

#: (start, end, value) of one hit in a text; value is what the detector's compact makes of it
Span = tuple[int, int, str]
Finditer = Callable[[str], Iterator[Span]]


def in_text(
    pattern: re.Pattern[str],
    accept: Callable[[str], bool] | None = None,
    compact: Callable[[str], str] | None = None,
) -> Finditer:
    """`finditer` of a detector that searches free text: (start, end, value) of every match of
    `pattern` that `accept` (the detector's is_valid) takes, as `compact` writes it. Without
    `accept` every match counts; without `compact` the matched text is the value."""

    def finditer(text: str) -> Iterator[Span]:
        for m in pattern.finditer(text):
            value = m.group(0)
            if accept is None or accept(value):
                yield m.start(), m.end(), value if compact is None else compact(value)

    return finditer


def whole_value(accept: Callable[[str], bool], compact: Callable[[str], str]) -> Finditer:
    """`finditer` of a detector that recognises only a whole value: one span over all of `text`
    when `accept` takes it, nothing otherwise (a name or a date inside a remark is not located)."""

    def finditer(text: str) -> Iterator[Span]:
        if accept(text):
            yield 0, len(str(text)), compact(text)

    return finditer


def find_with(finditer: Finditer) -> Callable[[str], list[str]]:
    """`find` of a detector: every value its `finditer` yields in `text`, in order."""

    def find(text: str) -> list[str]:
        return [value for _, _, value in finditer(text)]

    return find
