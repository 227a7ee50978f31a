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
from collections.abc import Iterator

from stdnum.cn import uscc as _stdnum_uscc

CATEGORY = "organisation_id"
LEVEL = None  # not personal information
EMBEDDED = True

PATTERN = re.compile(r"(?<![0-9A-Za-z_])[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}(?![0-9A-Za-z_])")


def compact(text: str) -> str:
    return str(text).strip().upper()


def is_valid(text: str) -> bool:
    number = compact(text)
    return len(number) == 18 and _stdnum_uscc.is_valid(number)


def mask(text: str) -> str:
    number = compact(text)
    return number[:6] + "*" * 10 + number[-2:]


def finditer(text: str) -> Iterator[tuple[int, int, str]]:
    for m in PATTERN.finditer(text):
        if is_valid(m.group(0)):
            yield m.start(), m.end(), compact(m.group(0))


def find(text: str) -> list[str]:
    return [value for _, _, value in finditer(text)]
