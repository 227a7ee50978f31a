"""Postal addresses (住址): Chinese addresses are written from the province down to the room, with
markers after each part (省, 市, 区, 县, 镇, 街道, 路, 号, 单元, 室, 小区, ...). A value with at least
two such markers in a plausible length is address-shaped (`is_valid`), with three it is an address
beyond doubt (`is_certain`). English addresses need a number and a street word (Road, Street).

>>> is_valid("北京市朝阳区建国路88号"), is_valid("北京市第一中学")
(True, False)
>>> mask("北京市朝阳区建国路88号")
'北京市***'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, whole_value

CATEGORY = "address"
LEVEL = "general"
EMBEDDED = False
PLAIN_DIGITS = False  # never takes a run of plain digits: an address has words as well as numbers

_MARKERS = re.compile(
    r"省|自治区|特别行政区|市|自治州|地区|盟|区|县|旗|镇|乡|街道|村|社区|路|街|大道|巷|胡同|弄|里|号院|号楼|号|栋|幢|座|单元|楼|层|室|小区|花园|公寓|大厦"
)
_FIRST_LEVEL = re.compile(r"^.{1,8}?(?:省|自治区|特别行政区|市)")
_ENGLISH = re.compile(
    r"\d+[A-Za-z]?,? [A-Za-z .'-]+ (?:Road|Rd|Street|St|Avenue|Ave|Lane|Ln|Drive|Dr|Way|Boulevard|Blvd"
    r"|Parkway|Pkwy|Place|Pl|Court|Ct|Circle|Cir|Terrace|Highway|Hwy|Square|Sq|Crescent|Close|Loop)\b",
    re.I,
)
# Under a column name that says "address": a house number and words (1913 Hanoi Way), in any script
_PLAUSIBLE = re.compile(r"\d{1,6}[A-Za-z]?[, ]+\S.{1,80}|.{1,80}\S[, ]+(?:No\.? ?)?\d{1,6}[A-Za-z]?", re.I)
PATTERN = re.compile(r"[\u4e00-\u9fff0-9A-Za-z\-]{4,60}")


_SPACES = re.compile(r"\s+")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def compact(text: str) -> str:
    return _SPACES.sub("", str(text))


def _markers(text: str) -> int:
    return len(_MARKERS.findall(text))


# an address is not written as a sentence or as markup: a paragraph that mentions one is not one
_NOT_AN_ADDRESS = re.compile(r"[。！？；!?;]|<[A-Za-z/][^>]*>")


def is_valid(text: str) -> bool:
    raw = str(text).strip()
    if _NOT_AN_ADDRESS.search(raw):
        return False
    if raw.isascii():  # no Chinese character (most values): only an English address can be one
        return _english(raw)
    address = compact(raw)
    if 6 <= len(address) <= 120 and _CJK.search(address):
        return _markers(address) >= 2
    return _english(raw)


def _english(raw: str) -> bool:
    # its number and street name are apart: without a space the search is skipped (over a long
    # run of digits, an ID or a card number, it tries every split of the run)
    return " " in raw and bool(_ENGLISH.search(raw))


def is_plausible(text: str) -> bool:
    """An address when the column's name says so: also a house number with a street name in any
    Western form, and a Chinese address with one marker."""
    raw = str(text).strip()
    if is_valid(raw) or _PLAUSIBLE.fullmatch(raw):
        return True
    address = compact(raw)
    return (
        not _NOT_AN_ADDRESS.search(raw)
        and 4 <= len(address) <= 120
        and bool(_CJK.search(address))
        and _markers(address) >= 1
    )


def is_certain(text: str) -> bool:
    address = compact(text)
    return (
        not _NOT_AN_ADDRESS.search(address)
        and 8 <= len(address) <= 120
        and _markers(address) >= 3
        and bool(re.search(r"\d", address) or _markers(address) >= 4)
    )


def mask(text: str) -> str:
    address = compact(text)
    m = _FIRST_LEVEL.match(address)
    return (m.group(0) if m else address[:2]) + "***"


# Whole values only: an address inside a remark is not located.
finditer = whole_value(is_valid, compact)
find = find_with(finditer)
