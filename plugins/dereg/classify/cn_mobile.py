"""Mainland China mobile numbers (手机号码): 11 digits starting 13-19, optionally written with
+86 or 0086 in front and spaces or dashes between the groups (138 1234 5678, 138-1234-5678).

>>> is_valid("+86 138-1234-5678")
True
>>> mask("13812345678")
'138****5678'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, in_text

CATEGORY = "cn_mobile"
LEVEL = "general"
EMBEDDED = True

PATTERN = re.compile(r"(?<![0-9A-Za-z_+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?![0-9A-Za-z_])")
_NUMBER = re.compile(r"1[3-9]\d{9}")
_SEPARATORS = re.compile(r"[\s()-]")


def compact(text: str) -> str:
    """The 11 digits, without country code or separators."""
    number = str(text)
    if not number.isdigit():  # the common case, 11 plain digits, needs no regex
        number = _SEPARATORS.sub("", number)
    if number.startswith("+86"):
        number = number[3:]
    elif number.startswith("0086"):
        number = number[4:]
    elif len(number) == 13 and number.startswith("86"):
        number = number[2:]
    return number


def is_valid(text: str) -> bool:
    return bool(_NUMBER.fullmatch(compact(text)))


def mask(text: str) -> str:
    number = compact(text)
    return number[:3] + "*" * max(len(number) - 7, 0) + number[-4:]


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
