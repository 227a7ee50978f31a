"""Bank card number (银行卡号): 16 to 19 digits passing the Luhn check, with a known issuer prefix:
UnionPay 62 (and 60/65/81 co-branded ranges), Visa 4, Mastercard 51-55 and 2221-2720, JCB 35,
American Express 34/37 (15 digits are left to other detectors).

>>> is_valid("6222 0212 3456 7890 128")
True
>>> is_valid("6222 0212 3456 7890 127")
False
>>> mask("6222021234567890")
'6222 **** **** 7890'
"""

from __future__ import annotations

import re

from stdnum import luhn

CATEGORY = "bank_card"
LEVEL = "sensitive"
PATTERN = re.compile(r"(?<![0-9A-Za-z])(\d{4}(?:[ -]?\d{4}){2}[ -]?\d{4,7})(?![0-9A-Za-z])")
_PREFIXES = ("62", "60", "65", "81", "4", "35", "34", "37") + tuple(str(p) for p in range(51, 56)) + tuple(
    str(p) for p in range(2221, 2721))


def compact(text: str) -> str:
    return re.sub(r"[\s-]", "", str(text))


def is_valid(text: str) -> bool:
    number = compact(text)
    return (16 <= len(number) <= 19 and number.isdigit() and number.startswith(_PREFIXES)
            and luhn.is_valid(number))


def mask(text: str) -> str:
    number = compact(text)
    return f"{number[:4]} **** **** {number[-4:]}"
