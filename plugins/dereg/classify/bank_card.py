"""Bank card numbers (银行卡号): 16 to 19 digits with a Luhn check digit and the issuer prefix of a
known scheme (UnionPay 62/60/65 and 9x domestic, Visa 4, Mastercard 51-55 and 2221-2720, JCB 35,
American Express 37), written as one run or in groups of four separated by spaces or dashes.

>>> is_valid("6222 0212 3456 7894")
True
>>> mask("6222021234567894")
'6222 **** **** 7894'
"""

from __future__ import annotations

import re

from dereg.classify import cn_resident_id
from dereg.classify.base import find_with, in_text

CATEGORY = "bank_card"
LEVEL = "sensitive"
EMBEDDED = True

PATTERN = re.compile(r"(?<![0-9A-Za-z_])(?:\d{16,19}|\d{4}(?:[ -]\d{4}){3}(?:[ -]?\d{1,3})?)(?![0-9A-Za-z_])")
PREFIXES = ("62", "60", "65", "4", "51", "52", "53", "54", "55", "35", "37", "94", "95", "98", "99")


_SEPARATORS = re.compile(r"[\s-]")
# a doubled digit's digit sum is again one digit: 0->0, 1->2, ..., 5->1 (10), ..., 9->9 (18)
_DOUBLED = str.maketrans("0123456789", "0246813579")


def compact(text: str) -> str:
    text = str(text)
    return text if text.isdigit() else _SEPARATORS.sub("", text)


_DOUBLED_BYTES = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_ok(digits: str) -> bool:
    reverse = digits[::-1]
    if reverse.isascii():  # sum the digits' bytes in C, then take off the 48 of each '0'
        data = reverse.encode()
        return (sum(data[::2]) + sum(data[1::2].translate(_DOUBLED_BYTES)) - 48 * len(data)) % 10 == 0
    return (sum(map(int, reverse[::2])) + sum(map(int, reverse[1::2].translate(_DOUBLED)))) % 10 == 0


def _known_prefix(number: str) -> bool:
    return number.startswith(PREFIXES) or 2221 <= int(number[:4]) <= 2720


def _scheme_length_ok(number: str) -> bool:
    """Mastercard numbers have 16 digits and Visa 16 or 19; UnionPay, JCB and domestic cards 16-19."""
    if number.startswith(("51", "52", "53", "54", "55")) or 2221 <= int(number[:4]) <= 2720:
        return len(number) == 16
    if number.startswith("4"):
        return len(number) in (16, 19)
    return True


def _resident_id_shaped(number: str) -> bool:
    """18 digits with a province prefix and a real birth date where a resident ID has them: a
    resident ID with a wrong check digit (a typo), not a card. Few real cards have 18 digits,
    and of those about one in 2,000 has this shape."""
    if len(number) != 18 or number[:2] not in cn_resident_id.PROVINCES:
        return False
    return cn_resident_id.birth_date(number) is not None


_MASTERCARD = ("51", "52", "53", "54", "55")


def is_valid(text: str) -> bool:
    number = compact(text)
    # cheapest tests first: most candidates are order numbers that fail on prefix or Luhn; the
    # prefix and scheme length tests of `_known_prefix` and `_scheme_length_ok`, read once
    if not (16 <= len(number) <= 19 and number.isdigit()):
        return False
    if number.startswith(_MASTERCARD) or 2221 <= int(number[:4]) <= 2720:
        if len(number) != 16:
            return False
    elif not number.startswith(PREFIXES) or number[0] == "4" and len(number) in (17, 18):
        return False
    return luhn_ok(number) and len(set(number)) > 2 and not _resident_id_shaped(number)


def mask(text: str) -> str:
    number = compact(text)
    return f"{number[:4]} **** **** {number[-4:]}"


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
