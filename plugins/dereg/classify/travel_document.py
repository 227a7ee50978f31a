"""Passports and travel permits (护照、港澳台通行证): numbers that identify a person crossing borders.

- PRC ordinary passports: E + 8 digits, or E + a letter (not I or O) + 7 digits; older G + 8 digits.
- Exit-Entry Permits for Hong Kong and Macau (往来港澳通行证), mainland residents: C + 8 digits, or
  C + a letter + 7 digits.
- Mainland Travel Permits for Hong Kong and Macau residents (回乡证): H or M + 8 digits (10 on the
  older cards).
- Mainland Travel Permits for Taiwan residents (台胞证): 8 digits. Eight digits alone are anything,
  so they count only after a label (台胞证, 台湾居民来往大陆通行证); the whole value is then the label
  and the number.

Foreign passports have no common shape; a column of them is found by its name (passport, 护照)
and the value shape checked by `is_valid` (6-9 letters and digits with at least one digit).

>>> is_valid("E12345678")
True
>>> mask("E12345678")
'E1*****78'
"""

from __future__ import annotations

import re
from collections.abc import Iterator

CATEGORY = "passport"
LEVEL = "sensitive"
EMBEDDED = True

_LETTER = "A-HJ-NP-Z"
PATTERN = re.compile(
    rf"(?<![0-9A-Za-z_])(?:[EG]\d{{8}}|E[{_LETTER}]\d{{7}}|C\d{{8}}|C[{_LETTER}]\d{{7}}|[HM]\d{{8}}(?:\d{{2}})?)"
    r"(?![0-9A-Za-z_])"
    r"|(?:台胞证|台湾居民来往大陆通行证)(?:号码?)?[:：\s]*\d{8}(?![0-9A-Za-z_])"
)
_PRC = re.compile(rf"[EG]\d{{8}}|E[{_LETTER}]\d{{7}}|C\d{{8}}|C[{_LETTER}]\d{{7}}|[HM]\d{{8}}(?:\d{{2}})?")
_TAIWAN = re.compile(r"(?:台胞证|台湾居民来往大陆通行证)(?:号码?)?[:：\s]*(\d{8})")
_FOREIGN = re.compile(r"(?=[A-Z0-9]*\d)[A-Z0-9]{6,9}")


def compact(text: str) -> str:
    text = str(text).strip()
    m = _TAIWAN.fullmatch(text)
    if m:
        return m.group(1)
    return re.sub(r"[\s-]", "", text).upper()


def is_valid(text: str) -> bool:
    """A PRC passport or permit number, or a labelled Taiwan residents' permit number."""
    raw = str(text).strip()
    if _TAIWAN.fullmatch(raw):
        return True
    number = compact(raw)
    return bool(_PRC.fullmatch(number)) and len(set(number[1:])) > 2


def is_foreign_shape(text: str) -> bool:
    """Could be a foreign passport number (6-9 letters/digits with a digit); believed only under a name hint."""
    return bool(_FOREIGN.fullmatch(compact(text)))


def mask(text: str) -> str:
    number = compact(text)
    return number[:2] + "*" * max(len(number) - 4, 0) + number[-2:]


def finditer(text: str) -> Iterator[tuple[int, int, str]]:
    for m in PATTERN.finditer(text):
        if is_valid(m.group(0)):
            yield m.start(), m.end(), compact(m.group(0))


def find(text: str) -> list[str]:
    return [value for _, _, value in finditer(text)]
