"""Dates of birth (出生日期): a date between 1900 and today, as a date value or written 2015-03-01,
2015/3/1, 2015.03.01, 2015年3月1日 or (whole values only) 20150301.

Any date has this shape (an enrolment date, a lesson date), so the engine believes it only under a
column name that says birth (出生日期, csrq, birthday, dob); birth dates inside resident ID numbers
are read by `cn_resident_id.birth_date`.

>>> is_valid("2015年3月1日"), is_valid("2099-01-01")
(True, False)
>>> mask("2015-03-01")
'2015-**-**'
"""

from __future__ import annotations

import re
from datetime import date, datetime

from dereg.classify.base import find_with, whole_value

CATEGORY = "birth_date"
LEVEL = "general"
EMBEDDED = False

PATTERN = re.compile(
    r"(?:19|20)\d{2}(?:[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])|年(?:0?[1-9]|1[0-2])月(?:0?[1-9]|[12]\d|3[01])日?)"
)
_PARTS = re.compile(r"((?:19|20)\d{2})(?:[-/.年])(\d{1,2})(?:[-/.月])(\d{1,2})日?")


def compact(text) -> str:
    parsed = parse(text)
    return parsed.isoformat() if parsed else str(text).strip()


def parse(value) -> date | None:
    """The date in `value`, or None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if text[:2] not in ("19", "20"):  # every form below starts with the century
        return None
    text = text.split(" ")[0].split("T")[0]
    try:
        m = _PARTS.fullmatch(text)
        if m:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if len(text) == 8 and text.isdigit() and text[:2] in ("19", "20"):
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None
    return None


_EARLIEST = date(1900, 1, 1)
#: a year before this one is in the past whatever today is (the clock only moves forward), so
#: most dates need no look at the clock
_YEAR_SEEN = date.today().year


def is_valid(value) -> bool:
    born = parse(value)
    return born is not None and _EARLIEST <= born and (born.year < _YEAR_SEEN or born <= date.today())


def mask(value) -> str:
    text = compact(value)
    return text[:4] + "-**-**"


# Whole values only: a date inside a remark is not taken for a birth date.
finditer = whole_value(is_valid, compact)
find = find_with(finditer)
