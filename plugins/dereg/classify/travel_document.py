"""Passports and travel permits (护照、港澳台通行证): numbers that identify a person crossing borders.

- PRC ordinary passports: E + 8 digits, or E + a letter (not I or O) + 7 digits; older G + 8 digits.
- Exit-Entry Permits for Hong Kong and Macau (往来港澳通行证), mainland residents: C + 8 digits, or
  C + a letter + 7 digits.
- Mainland Travel Permits for Hong Kong and Macau residents (回乡证): H or M + 8 digits (10 on the
  older cards).
- Mainland Travel Permits for Taiwan residents (台胞证): 8 digits.

A letter and eight digits is also the shape of many business codes, most often dated ones
(course C20240315, member M20230001, invoice E20240315). So inside free text:

- after a label (护照, 通行证, 回乡证, 台胞证, passport, permit) every shape counts, e.g.
  护照号：C20240315, passport no. G12345678; the Taiwan 8 digits count ONLY so;
- without a label every PRC shape counts unless its digits open like a dated code: a year
  1990-2039 followed by a month and day (C20240315) or by a serial starting 0 (H20230001). About
  one real number in 1,800 opens so; those are still found after a label or under a column name.
  Nor right after 准字: a drug's approval number (国药准字H12345678) has the permit's shape.

`is_valid` accepts a whole value of any PRC shape (with or without its label), which the engine
believes in a column whose name says passport or permit (护照, 通行证, passport, hzh, txz).
Foreign passports have no common shape; `is_foreign_shape` (6-9 letters and digits with at least
one digit) is believed only under such a column name and never searched in text.

>>> is_valid("E12345678"), is_valid("C20240315"), find("课程C20240315，护照号：C20240315")
(True, True, ['C20240315'])
>>> find("passport E20240315; G12345678, 会员号M20230001")
['E20240315', 'G12345678']
>>> mask("E12345678")
'E1*****78'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, in_text

CATEGORY = "passport"
LEVEL = "sensitive"
EMBEDDED = True

_LETTER = "A-HJ-NP-Z"
_SHAPES = rf"[EG]\d{{8}}|E[{_LETTER}]\d{{7}}|C\d{{8}}|C[{_LETTER}]\d{{7}}|[HM]\d{{8}}(?:\d{{2}})?"
# A label, its "number" word and separators: 护照号码：, 港澳通行证号 , Passport No.: , permit #
_LABEL = (
    r"(?:护照|通行证|回乡证|台胞证|[Pp]assport|PASSPORT|[Pp]ermit|PERMIT)"
    r"(?:号码?|编号|(?:\s?(?:No|NO|no|Number|number|#))\.?)?(?:是|为)?[:：#\s]{0,3}"
)
# Without a label: not when the digits open like a dated code, a year then a month and day or a
# serial starting 0 (C20240315, H20230001).
_DATED = r"(?:199\d|20[0-3]\d)(?:0\d{3}|1[0-2](?:0[1-9]|[12]\d|3[01]))"
_BARE = rf"[EGC](?!{_DATED})\d{{8}}|[HM](?!{_DATED})\d{{8}}(?:\d{{2}})?|[EC][{_LETTER}]\d{{7}}"
# Each branch tests its first character before anything else: the scanner's combined pattern
# tries every branch at every token start, and a failed one-character test is the cheapest.
PATTERN = re.compile(
    rf"(?=[EGCHM])(?<![0-9A-Za-z_])(?<!准字)(?:{_BARE})(?![0-9A-Za-z_])"
    rf"|(?=[护通回台Pp])(?<![0-9A-Za-z_]){_LABEL}(?:{_SHAPES}|\d{{8}})(?![0-9A-Za-z_])"
)
_PRC = re.compile(_SHAPES)
_LABELLED = re.compile(rf"{_LABEL}(?P<number>{_SHAPES}|\d{{8}})")
_FOREIGN = re.compile(r"(?=[A-Z0-9]*\d)[A-Z0-9]{6,9}")
_SEPARATORS = re.compile(r"[\s-]")


def compact(text: str) -> str:
    """The number alone, without its label."""
    text = str(text).strip()
    m = _LABELLED.fullmatch(text)
    if m:
        return m.group("number")
    return _SEPARATORS.sub("", text).upper()


def is_valid(text: str) -> bool:
    """A PRC passport or permit number (with or without its label), or a labelled Taiwan
    residents' permit number. A bare 8-digit number is not one."""
    raw = str(text).strip()
    m = _LABELLED.fullmatch(raw)
    if m and m.group("number").isdigit():
        return len(set(m.group("number"))) > 2  # a labelled Taiwan permit
    number = compact(raw)
    return bool(_PRC.fullmatch(number)) and len(set(number[1:])) > 2


def is_foreign_shape(text: str) -> bool:
    """Could be a foreign passport number (6-9 letters/digits with a digit); believed only under a name hint."""
    return bool(_FOREIGN.fullmatch(compact(text)))


def mask(text: str) -> str:
    number = compact(text)
    return number[:2] + "*" * max(len(number) - 4, 0) + number[-2:]


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
