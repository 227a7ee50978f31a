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


# Local parts that name a function of an organisation, not a person (RFC 2142 and common use).
ROLE_LOCAL_PARTS = frozenset(
    "admin administrator service services support help helpdesk info information contact contactus "
    "hello office hr jobs job career careers recruit recruitment hiring sales marketing market "
    "business bd pr press media news newsletter feedback complaint complaints kefu fuwu "
    "webmaster postmaster hostmaster abuse security privacy dpo legal compliance finance billing "
    "invoice invoices accounts accounting payment payments noreply no-reply donotreply do-not-reply "
    "notice notification notifications system root team enquiry enquiries inquiry service-center".split()
)


def is_role_address(text: str) -> bool:
    """An address of a role in an organisation (service@, hr@, noreply@), not of a person.

    >>> is_role_address("service@example.com"), is_role_address("No-Reply@example.com")
    (True, True)
    >>> is_role_address("zhang.wei@example.com")
    False
    """
    local = compact(text).rpartition("@")[0].lower()
    return local in ROLE_LOCAL_PARTS or local.split("+", 1)[0] in ROLE_LOCAL_PARTS


def mask(text: str) -> str:
    local, _, domain = compact(text).rpartition("@")
    return (local[:1] or "*") + "***@" + domain


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
