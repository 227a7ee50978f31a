"""Device identifiers (设备标识): what an app reports of the phone it runs on, one device and so,
mostly, one person. An IMEI (15 digits with a Luhn check digit, or 14 without it), a MEID
(14 hexadecimal characters), an advertising id (IDFA, OAID, GAID: a UUID, with or without its
dashes, upper or lower case), an Android ID (16 hexadecimal characters) or a push token (64
hexadecimal characters).

Any of these shapes is also a random key, so `is_valid` is believed only under a column name that
says device (device_id, imei, idfa, oaid, 设备号), where it lets the values contradict the name: a
`device_id` column holding `ios` or `web` is a device type, not a device.

>>> is_valid("490154203237518"), is_valid("6D92078A-8246-4BA4-AE5B-76104861E7DC")
(True, True)
>>> is_valid("490154203237519"), is_valid("android"), is_valid("0000000000000000")
(False, False, False)
>>> mask("490154203237518")
'4901***********'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, whole_value

CATEGORY = "device_id"
LEVEL = "general"
EMBEDDED = False

PATTERN = re.compile(
    r"[0-9]{14,15}|[0-9A-Fa-f]{14}|[0-9A-Fa-f]{16}|[0-9A-Fa-f]{64}"
    r"|[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}"
)


def compact(text) -> str:
    return str(text).strip()


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def is_valid(text) -> bool:
    """The shape of a device identifier; a 15-digit IMEI must pass its check digit, and a value of
    one repeated character (an unset id: 0000...) is none."""
    value = compact(text)
    if not PATTERN.fullmatch(value) or len(set(value.replace("-", ""))) <= 2:
        return False
    if len(value) == 15 and value.isdigit():
        return _luhn(value)
    return True


def mask(text) -> str:
    value = compact(text)
    return value[:4] + "*" * max(len(value) - 4, 1)


# Whole values only, believed under a device column's name.
finditer = whole_value(is_valid, compact)
find = find_with(finditer)
