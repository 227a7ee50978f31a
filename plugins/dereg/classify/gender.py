"""Gender (性别): 男/女 (男性/女性), M/F, male/female. The national code (GB/T 2261.1: 0 unknown,
1 male, 2 female, 9 unspecified) is a digit like any other, so digits count only under a column
name that says gender (xb, sex, 性别); words count on their own (`is_certain`).

>>> is_valid("女"), is_certain("2"), is_valid("2")
(True, False, True)
>>> mask("女")
'*'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, whole_value

CATEGORY = "gender"
LEVEL = "general"
EMBEDDED = False

WORDS = frozenset({"男", "女", "男性", "女性", "m", "f", "male", "female", "man", "woman"})
CODES = frozenset({"0", "1", "2", "9"})
PATTERN = re.compile(r"男性?|女性?|(?i:male|female)")


def compact(text) -> str:
    return str(text).strip().lower()


def is_certain(text) -> bool:
    return compact(text) in WORDS


def is_valid(text) -> bool:
    value = compact(text)
    return value in WORDS or value in CODES


def mask(text) -> str:
    return "*"


# Whole values only, and only the words (a digit is a gender only under a gender column).
finditer = whole_value(is_certain, compact)
find = find_with(finditer)
