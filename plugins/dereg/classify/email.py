"""E-mail addresses (电子邮箱): a local part, @, and a domain with at least one dot and a letter TLD.

>>> is_valid("zhang.wei@example.com")
True
>>> mask("zhang.wei@example.com")
'z***@example.com'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, in_text

CATEGORY = "email"
LEVEL = "general"
EMBEDDED = True

PATTERN = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)


def compact(text: str) -> str:
    return str(text).strip()


def is_valid(text: str) -> bool:
    address = compact(text)
    if not PATTERN.fullmatch(address):
        return False
    local, _, domain = address.rpartition("@")
    return not (local.startswith(".") or local.endswith(".") or ".." in local or len(domain) > 253)


def mask(text: str) -> str:
    local, _, domain = compact(text).rpartition("@")
    return (local[:1] or "*") + "***@" + domain


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
