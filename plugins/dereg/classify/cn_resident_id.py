"""Resident identity card number of the PRC (居民身份证号码, GB 11643-1999).

18 characters: a 6-digit region code, the birth date YYYYMMDD, a 3-digit sequence whose last digit
is odd for men and even for women, and an ISO 7064 MOD 11-2 check character (0-9 or X). The legacy
15-digit form has a 2-digit year and no check character. Validation uses python-stdnum for the
check character and birth date, and also requires a plausible region code, so that an 18-digit
order number rarely passes.

>>> is_valid("11010519491231002X")
True
>>> mask("11010519491231002X")
'1101**********002X'
"""

from __future__ import annotations

import datetime as dt
import re

from stdnum.cn import ric

CATEGORY = "cn_resident_id"
LEVEL = "sensitive"
PATTERN = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")

# First two digits of the provinces, autonomous regions and municipalities (and 71/81/82).
_PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53,
              54, 61, 62, 63, 64, 65, 71, 81, 82}


def compact(text: str) -> str:
    return re.sub(r"[\s-]", "", str(text)).upper()


def birth_date(text: str) -> dt.date | None:
    number = compact(text)
    try:
        if len(number) == 18:
            return ric.get_birth_date(number)
        if len(number) == 15 and number.isdigit():
            return dt.date(1900 + int(number[6:8]), int(number[8:10]), int(number[10:12]))
    except (ValueError, ric.ValidationError):
        return None
    return None


def is_valid(text: str) -> bool:
    number = compact(text)
    if len(number) not in (15, 18) or not number[:17].isdigit() or int(number[:2]) not in _PROVINCES:
        return False
    if len(number) == 18 and not ric.is_valid(number):
        return False
    if len(number) == 15 and not number.isdigit():
        return False
    born = birth_date(number)
    return born is not None and dt.date(1900, 1, 1) <= born <= dt.date.today()


def mask(text: str) -> str:
    number = compact(text)
    return number[:4] + "*" * (len(number) - 8) + number[-4:]
