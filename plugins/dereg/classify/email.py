"""E-mail addresses (电子邮箱): a local part, @, and a domain with at least one dot and a letter TLD.

>>> is_valid("zhang.wei@example.com")
True
>>> mask("zhang.wei@example.com")
'z***@example.com'
"""

from __future__ import annotations

import re
from collections.abc import Iterator

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


def finditer(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, address) of every valid address in `text`."""
    for m in PATTERN.finditer(text):
        if is_valid(m.group(0)):
            yield m.start(), m.end(), m.group(0)


def find(text: str) -> list[str]:
    return [value for _, _, value in finditer(text)]
