"""IP addresses (IP地址), version 4 and 6: a device's network address, personal when it is a
customer's (login logs, order records). Loopback, unspecified, multicast and reserved addresses
identify nobody and are not matched; neither are version numbers (1.2.3; 2.1.0.3 after a label
such as 版本 or version, and any four single-digit parts such as 1.2.3.4, a version far more often
than an address) or dotted prices.

>>> is_valid("203.0.113.45")
True
>>> is_valid("127.0.0.1")
False
>>> find("版本 2.1.0.3，build 1.2.3.4，登录 58.215.12.1")
['58.215.12.1']
>>> mask("203.0.113.45")
'203.0.*.*'
"""

from __future__ import annotations

import ipaddress
import re

from dereg.classify.base import find_with, in_text

CATEGORY = "ip_address"
LEVEL = "general"
EMBEDDED = True

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_VERSION_LABELS = ("版本", "版本号", "固件", "version", "Version", "VERSION", "ver", "Ver", "build", "Build")
_SEPARATORS = (" ", ":", "：", ": ", "： ", "")
# Not right after a version label: one cheap test of the preceding character (a label's last
# character or a separator), the full list only where that test fails; after (?=\d), so the scan
# pays for it only at digits.
_NOT_A_VERSION = (
    r"(?:(?<![本号件nrdNRD:： ])|"
    + "".join(f"(?<!{re.escape(label + sep)})" for label in _VERSION_LABELS for sep in _SEPARATORS)
    + ")"
)
PATTERN = re.compile(
    rf"(?=\d)(?<![0-9A-Za-z_.]){_NOT_A_VERSION}{_OCTET}(?:\.{_OCTET}){{3}}(?![0-9A-Za-z_]|\.\d)"
    r"|(?<![0-9A-Za-z_:])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{1,4}(?![0-9A-Za-z_:])"
    r"|(?<![0-9A-Za-z_:])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,5})?(?![0-9A-Za-z_:])"
)


def compact(text: str) -> str:
    return str(text).strip().strip("[]")


def is_valid(text: str) -> bool:
    text = compact(text)
    if len(text) == 7 and text.count(".") == 3:  # 1.2.3.4: four single digits, a version
        return False
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not (
        address.is_loopback
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or address.is_link_local
    )


def mask(text: str) -> str:
    address = compact(text)
    if ":" in address:
        return address.split(":")[0] + ":****"
    parts = address.split(".")
    return ".".join(parts[:2] + ["*", "*"])


finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
