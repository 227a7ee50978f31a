"""Mainland China fixed-line telephone numbers (固定电话): a trunk 0, an area code of 2 or 3 more
digits (010 and 02x for the largest cities, 0xxx elsewhere) and a 7- or 8-digit subscriber number
starting 2-8, written with or without +86/0086, parentheses, spaces or dashes, and an optional
extension (转 123, ext. 123). Service numbers (400/800) belong to companies and are not matched.
Written in groups, the first group must be the whole area code (077-48987217 is not 0774-8987217).

>>> is_valid("(010) 6552-9988")
True
>>> is_valid("0571-8765432")
True
>>> is_valid("077-48987217"), find("id c298d177-b84f-0e84-38ad-062135480262")
(False, [])
>>> mask("01065529988")
'010****9988'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, in_text

CATEGORY = "phone"
LEVEL = "general"
EMBEDDED = True

# Not the inside of a dashed token either (a UUID's last group, 0621-3548... in ab12-062135480262).
PATTERN = re.compile(
    r"(?<![0-9A-Za-z_+])(?<![0-9A-Za-z]-)(?:(?:\+|00)86[ -]?)?(?:\(0?\d{2,3}\)|0?\d{2,3})[ -]?[2-8]\d{2,3}[ -]?\d{4}"
    r"(?:[ -]?(?:转|ext\.?|x)[ ]?\d{1,5})?(?![0-9A-Za-z_])"
)
#: what the native candidate search looks for (`native`, `scanner.native_patterns`): the matches
#: of PATTERN that `is_valid` can accept, which start with a trunk 0, a parenthesis or a country
#: code (a full scan meets many voucher and order numbers of a landline's shape starting 1-9, and
#: each would otherwise cost a search and a check)
CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z_+])(?<![0-9A-Za-z]-)(?:(?:\+|00)86[ -]?(?:\(0?\d{2,3}\)|0?\d{2,3})|\(0?\d{2,3}\)|0\d{1,3})"
    r"[ -]?[2-8]\d{2,3}[ -]?\d{4}(?:[ -]?(?:转|ext\.?|x)[ ]?\d{1,5})?(?![0-9A-Za-z_])"
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


_FIRST_GROUP = re.compile(r"\(?(\d+)[)\s-]")


def _grouped_as_area(text: str, area: int) -> bool:
    """Written in groups, the first group is the area code (with or without its trunk 0): 077-4898...
    is no number of area 0774."""
    rest = _EXTENSION.sub("", str(text).strip())
    rest = re.sub(r"^(?:\+|00)86[ -]?", "", rest)
    m = _FIRST_GROUP.match(rest)
    if m is None:
        return True  # one run of digits
    group = m.group(1)
    return len(group if group.startswith("0") else "0" + group) == area


#: a first character that leaves no trunk 0 and no country code: most candidates of a full scan
#: that fail (order and voucher numbers) fail here, before `compact`'s substitutions
_NOT_A_START = frozenset("123456789")


def is_valid(text: str) -> bool:
    if str(text).lstrip()[:1] in _NOT_A_START:
        return False
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
    if not subscriber or subscriber[0] not in "2345678" or not _grouped_as_area(text, area):
        return False
    if area == 3:
        return len(subscriber) == 8
    return len(subscriber) in (7, 8)


# A number abroad in international form (+1-408-555-0199, +44 20 7946 0958): any country but China's
# (+86 numbers are judged by the mainland shapes above), 8 to 15 digits in groups. Too loose to be
# searched in text; believed as a whole value under a phone or mobile column's name only. Toll-free
# numbers are a company's, as 400/800 are at home: North America's 800, 833-888 and the universal
# +800 are not a person's.
_INTERNATIONAL = re.compile(r"\+(?!86)[1-9]\d{0,2}(?:[ .\-]?\(?\d{1,5}\)?){1,6}")
_TOLL_FREE = re.compile(r"\+(?:1[ .\-]?\(?8(?:00|33|44|55|66|77|88)\)?|800)(?!\d)")


def is_international(text: str) -> bool:
    """A telephone number abroad written in international form (a whole value).

    >>> is_international("+1-408-555-0199"), is_international("+1 (408) 555-0199")
    (True, True)
    >>> is_international("+86 13812345678"), is_international("+1-800-555-0199")
    (False, False)
    """
    raw = str(text).strip()
    return (
        bool(_INTERNATIONAL.fullmatch(raw))
        and 8 <= sum(c.isdigit() for c in raw) <= 15
        and not _TOLL_FREE.match(raw)
    )


def mask(text: str) -> str:
    number = compact(text)
    area = _area_length(number)
    return number[:area] + "*" * max(len(number) - area - 4, 0) + number[-4:]


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
