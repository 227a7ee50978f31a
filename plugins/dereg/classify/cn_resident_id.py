"""Chinese resident identity card numbers (居民身份证号码, GB 11643-1999).

An 18-character number is a 6-digit region code (province, city, county), the birth date as
YYYYMMDD, a 3-digit sequence (odd for men, even for women) and a check digit 0-9 or X computed
with ISO 7064 MOD 11-2. The older 15-digit form has the birth date as YYMMDD (1900s) and no
check digit; with nothing to check but a date, a 15-digit number is believed only when its first
six digits are a region code that has existed (python-stdnum's table of GB/T 2260 codes, past ones
included): about one random 15-digit number in 3,000 passes, against one in 80 with the province
alone.

>>> is_valid("11010519491231002X")
True
>>> is_valid("110105491231002"), is_valid("119905491231002")
(True, False)
>>> mask("11010519491231002X")
'1101**********002X'
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from importlib.resources import files
from operator import mul

from dereg.classify.base import find_with, in_text

CATEGORY = "cn_resident_id"
LEVEL = "sensitive"
EMBEDDED = True

# ASCII letters, digits and underscores next to the number make it part of a longer token (an
# order number, a pseudonymisation token such as tok_3f9a...), so neither side may have one.
PATTERN = re.compile(r"(?<![0-9A-Za-z_])(?:\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z_])")

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_ZERO_WEIGHT = 48 * sum(_WEIGHTS)
# First two digits of the region code: provinces, autonomous regions, municipalities, HK/MO/TW.
PROVINCES = frozenset(
    {
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
        "83",
    }
)


_SEPARATORS = re.compile(r"[\s-]")


@lru_cache(maxsize=1)
def regions() -> frozenset[str]:
    """Every 6-digit region code in python-stdnum's table (cn/loc.dat), current and past."""
    codes: set[str] = set()
    province = ""
    for line in files("stdnum.cn").joinpath("loc.dat").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        code = line.split()[0]
        if not line[0].isspace():
            province = code  # "11 province=..." then indented "  0105 county=..." under it
        elif len(province) == 2 and len(code) == 4 and code.isdigit():
            codes.add(province + code)
    return frozenset(codes)


def compact(text: str) -> str:
    text = str(text)
    if text.isalnum() and text.isascii():  # the common case: no separators, skip the regex
        return text.upper()
    return _SEPARATORS.sub("", text).upper()


def calc_check_digit(number: str) -> str:
    """Check digit of the first 17 digits of `number`."""
    head = number[:17]
    if head.isascii():  # the bytes' weighted sum in C, less 48 times the weights for the '0's
        return _CHECK[(sum(map(mul, head.encode(), _WEIGHTS)) - _ZERO_WEIGHT) % 11]
    return _CHECK[sum(map(mul, map(int, head), _WEIGHTS)) % 11]


def birth_date(text: str) -> date | None:
    """Birth date encoded in the number, or None when it is not a real date."""
    return _born(compact(text))


def _born(number: str) -> date | None:
    try:
        if len(number) == 18:
            return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        if len(number) == 15:
            return date(1900 + int(number[6:8]), int(number[8:10]), int(number[10:12]))
    except ValueError:
        return None
    return None


_EARLIEST = date(1900, 1, 1)
#: a birth year before this one is in the past whatever today is (the clock only moves forward),
#: so most numbers need no look at the clock
_YEAR_SEEN = date.today().year


def is_valid(text: str) -> bool:
    """18 digits (last may be X) with the right check digit, or the old 15-digit form; the birth
    date must be a real date between 1900 and today and the region a real province code (for
    the 15-digit form, a real region code)."""
    number = compact(text)
    if len(number) == 18:
        if not number[:17].isdigit() or number[17] != calc_check_digit(number):
            return False
    elif len(number) != 15 or not number.isdigit() or number[:6] not in regions():
        return False
    if number[:2] not in PROVINCES or number[2:6] == "0000":
        return False
    born = _born(number)
    return born is not None and _EARLIEST <= born and (born.year < _YEAR_SEEN or born <= date.today())


def mask(text: str) -> str:
    """Keep the first four and the last four characters: 1101**********123X."""
    number = compact(text)
    return number[:4] + "*" * max(len(number) - 8, 0) + number[-4:]


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
