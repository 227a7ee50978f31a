"""Unified social credit codes (统一社会信用代码, GB 32100-2015): the 18-character registration number
of a company or other organisation, with a check character. It identifies an organisation, not a
person, so it is recognised in order NOT to take it for a resident ID or a card number; its
category `organisation_id` is not personal and never makes a column personal.

>>> is_valid("91110000600037341L")
True
>>> mask("91110000600037341L")
'911100**********1L'
"""

from __future__ import annotations

import re
from operator import mul

from dereg.classify.base import find_with, in_text

CATEGORY = "organisation_id"
LEVEL = None  # not personal information
EMBEDDED = True

PATTERN = re.compile(r"(?<![0-9A-Za-z_])[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}(?![0-9A-Za-z_])")


def compact(text: str) -> str:
    return str(text).strip().upper()


_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def is_valid(text: str) -> bool:
    number = compact(text)
    if len(number) != 18 or not number[:8].isdigit():  # as python-stdnum: the first eight are digits
        return False
    # python-stdnum's cn.uscc check, without its per-character clean-up (which cost more than the rest of a
    # scan of 18-digit order numbers): every 18-digit number that is no resident ID comes here
    try:
        total = sum(map(mul, map(_VALUE.__getitem__, number[:17]), _WEIGHTS))  # in C, no generator
    except KeyError:
        return False
    return number[17] in _VALUE and number[17] == _ALPHABET[(31 - total) % 31]


def mask(text: str) -> str:
    number = compact(text)
    return number[:6] + "*" * 10 + number[-2:]


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
