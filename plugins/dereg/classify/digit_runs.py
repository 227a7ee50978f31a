"""Whole columns of digit runs checked at once with numpy: the full scan's fast path for ID, card
and mobile number columns (`scanner.digit_fields`).

A block of tab-separated rows (as a full scan reads them) is turned into an array of one number
per character (`scanner._code_units`: UTF-16 code units, code points where a character needs two
units); the fields of the digit-run columns are cut out by the positions of tabs and line ends,
and the three kinds that fill such columns are checked for all values of one length at once:

- 18 characters, 17 digits and a digit or X: a resident ID (`cn_resident_id.is_valid`: province,
  region not 0000, a real birth date from 1900 to today, ISO 7064 MOD 11-2 check digit);
- 11 digits starting 13-19: a mobile number (`cn_mobile`);
- 16, 17 or 19 digits: a bank card (`bank_card.is_valid`: known prefix, scheme length, Luhn,
  more than two distinct digits).

Only what these checks *accept* is decided here, and only where no detector earlier in priority
order can match (an 11-digit run is no ID, card or credit code; a 16-digit one no ID or credit
code); every other digit run (an 18-digit run failing the ID check, which may be a credit code or
a card; a landline; any other length) is handed back for the per-value check, which decides it
exactly as the stream would. tests/unit/classify/test_digit_runs.py compares both over random and
crafted values.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from dereg.classify import bank_card, cn_resident_id

_ZERO = ord("0")
_ID_WEIGHTS = np.array(cn_resident_id._WEIGHTS, dtype=np.uint8)
_ID_CHECK = np.array([ord(c) for c in cn_resident_id._CHECK], dtype=np.uint32)
_PROVINCE = np.zeros(100, dtype=bool)
_PROVINCE[[int(p) for p in cn_resident_id.PROVINCES]] = True
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
#: the two-digit card prefixes `bank_card.PREFIXES` knows, by value
_KNOWN_TWO = np.zeros(100, dtype=bool)
_KNOWN_TWO[[int(p) for p in bank_card.PREFIXES if len(p) == 2]] = True
#: the number of bits set in each 10-bit mask (of the digits a card number holds)
_BITS_SET = np.array([bin(m).count("1") for m in range(1 << 10)], dtype=np.uint8)


def _digit_rows(chars: np.ndarray) -> np.ndarray:
    """The digits of `chars` (n x k ASCII digits), one byte each, one row per position: each step
    of a check is then one pass over contiguous rows of the whole column."""
    return np.subtract(chars.T, _ZERO, dtype=np.uint8, casting="unsafe", order="C")


def _number(digits: np.ndarray) -> np.ndarray:
    """The integer the rows of `digits` (values 0-9, one column per value) spell."""
    out = digits[0].astype(np.int32)
    for k in range(1, len(digits)):
        out *= 10
        out += digits[k]
    return out


def resident_ids(chars: np.ndarray) -> np.ndarray:
    """Which rows of `chars` (n x 18 characters' numbers: 17 ASCII digits and a digit, X or x) are valid
    resident IDs, as `cn_resident_id.is_valid` says."""
    digits = _digit_rows(chars[:, :17])
    last = chars[:, 17]
    last = np.where(last == ord("x"), ord("X"), last)
    total = np.zeros(len(chars), dtype=np.int16)
    for k in range(17):
        total += digits[k] * _ID_WEIGHTS[k]
    ok = _ID_CHECK[total % 11] == last
    ok &= _PROVINCE[_number(digits[0:2])]
    ok &= _number(digits[2:6]) != 0
    year, month, day = _number(digits[6:10]), _number(digits[10:12]), _number(digits[12:14])
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days = _MONTH_DAYS[np.minimum(month, 12)] + ((month == 2) & leap)
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= days) & (year >= 1900)
    today = date.today()
    born = year * 10000 + month * 100 + day
    ok &= (year < cn_resident_id._YEAR_SEEN) | (born <= today.year * 10000 + today.month * 100 + today.day)
    return ok


def mobiles(chars: np.ndarray) -> np.ndarray:
    """Which rows of `chars` (n x 11 ASCII digits) are mobile numbers (1, then 3-9)."""
    return (chars[:, 0] == ord("1")) & (chars[:, 1] >= ord("3"))


def bank_cards(chars: np.ndarray) -> np.ndarray:
    """Which rows of `chars` (n x 16, 17 or 19 ASCII digits) are bank card numbers, as
    `bank_card.is_valid` says (18 digits are not taken here: a resident ID's shape decides them)."""
    length = chars.shape[1]
    if length not in (16, 17, 19):
        raise ValueError("bank_cards takes 16, 17 or 19 digits")
    digits = _digit_rows(chars)
    first = digits[0]
    two = first.astype(np.int16) * 10 + digits[1]
    four = two * 100 + digits[2] * 10 + digits[3]
    mastercard = ((two >= 51) & (two <= 55)) | ((four >= 2221) & (four <= 2720))
    visa = first == 4
    known = _KNOWN_TWO[two] | visa
    ok = np.where(mastercard, length == 16, known & ~(visa & (length in (17, 18))))
    # Luhn from the right: every second digit doubled
    # (a doubled digit d adds 2d, less 9 from 5 up)
    doubled = digits[length - 2 :: -2]
    total = digits[length - 1 :: -2].sum(axis=0, dtype=np.int16)
    total += doubled.sum(axis=0, dtype=np.int16) * 2 - (doubled >= 5).sum(axis=0, dtype=np.int16) * 9
    ok &= total % 10 == 0
    # more than two distinct digits: the bits of the digits present, counted
    present = np.bitwise_or.reduce(np.left_shift(np.uint16(1), digits, dtype=np.uint16), axis=0)
    ok &= _BITS_SET[present] > 2
    return ok
