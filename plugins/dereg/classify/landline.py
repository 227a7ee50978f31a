"""Mainland China fixed-line telephone numbers (固定电话): a trunk 0, an area code of 2 or 3 more
digits (010 and 02x for the largest cities, 0xxx elsewhere) and a 7- or 8-digit subscriber number
starting 2-8, written with or without +86/0086, parentheses, spaces or dashes, and an optional
extension (转 123, ext. 123). Service numbers (400/800) belong to companies and are not matched.

>>> is_valid("(010) 6552-9988")
True
>>> is_valid("0571-8765432")
True
>>> mask("01065529988")
'010****9988'
"""

from __future__ import annotations

import re
from collections.abc import Iterator

CATEGORY = "phone"
LEVEL = "general"
EMBEDDED = True

PATTERN = re.compile(
    r"(?<![0-9A-Za-z_+])(?:(?:\+|00)86[ -]?)?(?:\(0?\d{2,3}\)|0?\d{2,3})[ -]?[2-8]\d{2,3}[ -]?\d{4}"
    r"(?:[ -]?(?:转|ext\.?|x)[ ]?\d{1,5})?(?![0-9A-Za-z_])"
)
_EXTENSION = re.compile(r"(?:转|ext\.?|x)\s?\d{1,5}$")
_DROP = re.compile(r"[\s()\-]")


def compact(text: str) -> str:
    """Trunk 0, area code and subscriber number as one run of digits; country code and extension dropped."""
    number = _EXTENSION.sub("", str(text).strip())
    international = number.startswith(("+86", "0086"))
    number = _DROP.sub("", number)
    if international:
        number = number[3:] if number.startswith("+86") else number[4:]
        if not number.startswith("0"):
            number = "0" + number
    return number


def _area_length(number: str) -> int:
    """Digits of the area code including the trunk 0: 3 for 010 and 02x, else 4."""
    return 3 if number.startswith(("010", "02")) else 4


def is_valid(text: str) -> bool:
    number = compact(text)
    if (
        not number.isdigit()
        or not number.startswith("0")
        or number.startswith(("00", "01"))
        and not number.startswith("010")
    ):
        return False
    area = _area_length(number)
    subscriber = number[area:]
    if not subscriber or subscriber[0] not in "2345678":
        return False
    if area == 3:
        return len(subscriber) == 8
    return len(subscriber) in (7, 8)


def mask(text: str) -> str:
    number = compact(text)
    area = _area_length(number)
    return number[:area] + "*" * max(len(number) - area - 4, 0) + number[-4:]


def finditer(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, number) of every valid number in `text`."""
    for m in PATTERN.finditer(text):
        if is_valid(m.group(0)):
            yield m.start(), m.end(), compact(m.group(0))


def find(text: str) -> list[str]:
    return [value for _, _, value in finditer(text)]
