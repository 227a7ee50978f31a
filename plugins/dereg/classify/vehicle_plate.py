"""Vehicle licence plates (机动车号牌, GA 36-2018): a province's one-character abbreviation, the
issuing office's letter, then five letters or digits (I and O are never used), with at least
three digits among them; new-energy plates have six (D or F and five more, or five digits and D
or F). A suffix 挂, 学, 警, 港 or 澳 marks trailers, learners, police and cross-border cars. A
private car's plate identifies its owner (the car park's or the company car's register).

The shape is distinctive enough to be believed without a column name (`is_certain`), as a whole
value only: inside free text the same seven characters are too often part of a longer code.

>>> is_valid("粤B12345"), is_valid("京A·D12345"), is_valid("沪C5K3Z1学")
(True, True, True)
>>> is_valid("粤BABCDE"), is_valid("粤I12345"), is_valid("B12345")
(False, False, False)
>>> mask("粤B12345")
'粤B***45'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, whole_value

CATEGORY = "vehicle"
LEVEL = "general"
EMBEDDED = False
PLAIN_DIGITS = False  # never takes a run of plain digits: a plate starts with its province's character

_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_ALNUM = "A-HJ-NP-Z0-9"
PATTERN = re.compile(
    rf"[{_PROVINCES}][A-HJ-NP-Z][·\s-]?"
    rf"(?:[DF][{_ALNUM}]\d{{4}}|\d{{5}}[DF]|[{_ALNUM}]{{5}})[挂学警港澳]?"
)
_SEPARATOR = re.compile(r"[·\s-]")


def compact(text) -> str:
    return _SEPARATOR.sub("", str(text).strip()).upper()


def is_valid(text) -> bool:
    text = str(text)
    if text.isascii():  # a plate starts with its province's Chinese character
        return False
    plate = compact(text)
    return bool(PATTERN.fullmatch(plate)) and sum(c.isdigit() for c in plate[2:]) >= 3


def is_certain(text) -> bool:
    return is_valid(text)


def mask(text) -> str:
    plate = compact(text)
    return plate[:2] + "***" + plate[-2:]


finditer = whole_value(is_valid, compact)
find = find_with(finditer)
