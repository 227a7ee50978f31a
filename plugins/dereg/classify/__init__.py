"""Classification: which columns hold personal information, of which category and level.

One module per detector, each with the same surface: CATEGORY, LEVEL, EMBEDDED, PATTERN, compact,
is_valid, mask, finditer, find (some add is_certain: valid beyond doubt without a column name;
some whole-value ones PLAIN_DIGITS = False: they never take a run of plain digits).
A detector writes what its data looks like; its finditer and find are built by `base` from that.
`names` turns column names into hints, `taxonomy` gives each category its level and display names,
`scanner` runs the embedded detectors over text, `engine` concludes per column.
"""

from __future__ import annotations

from dereg.classify import (
    address,
    bank_card,
    biometric,
    birth_date,
    cn_mobile,
    cn_resident_id,
    device_id,
    email,
    gender,
    health,
    im_account,
    ip_address,
    landline,
    person_name,
    travel_document,
    uscc,
    vehicle_plate,
)

# Searched inside free text, in priority order: a span claimed by an earlier detector is not
# offered to later ones (a resident ID that also passes Luhn is not also a card; an organisation's
# credit code is not a person's ID).
DETECTORS = (
    cn_resident_id,
    uscc,
    bank_card,
    cn_mobile,
    landline,
    travel_document,
    email,
    ip_address,
    im_account,
    health,
)
#: every detector, including those that recognise only a whole value (names, addresses, dates)
ALL_DETECTORS = (*DETECTORS, person_name, address, birth_date, gender, biometric, device_id, vehicle_plate)
BY_CATEGORY = {d.CATEGORY: d for d in ALL_DETECTORS}

__all__ = ["ALL_DETECTORS", "BY_CATEGORY", "DETECTORS"] + [
    d.__name__.rsplit(".", 1)[1] for d in ALL_DETECTORS
]
