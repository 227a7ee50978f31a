"""E-mail address (电子邮箱).

>>> is_valid("zhang.san@example.com")
True
>>> mask("zhang.san@example.com")
'z***@example.com'
"""

from __future__ import annotations

import re

CATEGORY = "email"
LEVEL = "general"
PATTERN = re.compile(r"(?<![\w.+-])([A-Za-z0-9][\w.+-]{0,63}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24})(?![\w-])")
_FULL = re.compile(r"^[A-Za-z0-9][\w.+-]{0,63}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}$")


def compact(text: str) -> str:
    return str(text).strip()


def is_valid(text: str) -> bool:
    return bool(_FULL.match(compact(text)))


def mask(text: str) -> str:
    local, _, domain = compact(text).partition("@")
    return f"{local[:1]}***@{domain}"
