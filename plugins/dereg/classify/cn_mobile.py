"""Mainland China mobile number (手机号): 11 digits starting 13-19, optionally +86 / 0086, with
spaces or dashes as people write them (138 1234 5678, 138-1234-5678).

>>> is_valid("+86 138-1234-5678")
True
>>> mask("13812345678")
'138****5678'
"""

from __future__ import annotations

import re

CATEGORY = "cn_mobile"
LEVEL = "general"
PATTERN = re.compile(r"(?<![0-9A-Za-z])((?:\+86|0086)?[ -]?1[3-9]\d[ -]?\d{4}[ -]?\d{4})(?![0-9A-Za-z])")


def compact(text: str) -> str:
    number = re.sub(r"[\s-]", "", str(text))
    for prefix in ("+86", "0086"):
        if number.startswith(prefix):
            number = number[len(prefix):]
    return number


def is_valid(text: str) -> bool:
    number = compact(text)
    return len(number) == 11 and number.isdigit() and number[0] == "1" and number[1] in "3456789"


def mask(text: str) -> str:
    number = compact(text)
    return number[:3] + "****" + number[-4:]
