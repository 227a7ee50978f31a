"""Last line of defence against personal values in messages we did not write ourselves.

Dereg's own errors name tables and counts only, but a driver's exception text may quote a value.
Before such text reaches a log line or the ledger it passes through `redact`, which masks long
digit runs (ID, phone and card numbers) and e-mail addresses.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"(?<![0-9A-Za-z])(\+?\d[\d -]{5,}\d[0-9Xx]?)(?![0-9A-Za-z])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_QUOTED_PARAMS = re.compile(r"\[parameters: .*?\]", re.S)


def _mask_digits(match: re.Match) -> str:
    text = match.group(1)
    digits = re.sub(r"\D", "", text)
    if len(digits) < 7:
        return text
    return text[:3] + "*" * max(len(text) - 6, 1) + text[-3:]


def redact(text: str, limit: int = 600) -> str:
    """Mask values that could be personal; shorten to `limit` characters."""
    text = _QUOTED_PARAMS.sub("[parameters hidden]", str(text))
    text = _EMAIL.sub(lambda m: m.group(0)[0] + "***@" + m.group(0).split("@", 1)[1], text)
    text = _DIGITS.sub(_mask_digits, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
