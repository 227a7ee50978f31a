"""Classification: which columns hold personal information, of which category and level.

One module per detector (cn_resident_id, cn_mobile, email, bank_card), each with the same surface:
CATEGORY, LEVEL, PATTERN, compact, is_valid, mask, finditer, find. `names` turns column names into
hints, `taxonomy` gives each category its level and display names, `engine` puts them together.
"""

from __future__ import annotations

from dereg.classify import bank_card, cn_mobile, cn_resident_id, email

# Order matters: a span claimed by an earlier detector is not offered to later ones (an 18-digit
# resident ID can also pass Luhn with a card-like prefix).
DETECTORS = (cn_resident_id, bank_card, cn_mobile, email)
#: every detector, including those that only recognise a whole value (names, addresses)
ALL_DETECTORS = DETECTORS

__all__ = ["ALL_DETECTORS", "DETECTORS", "bank_card", "cn_mobile", "cn_resident_id", "email"]
