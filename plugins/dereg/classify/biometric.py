"""Biometric data (生物识别信息, sensitive): face photos and fingerprint templates kept about people.

`is_valid` recognises images (JPEG, PNG, GIF, WebP, HEIC, BMP) as raw bytes, base64 text (BMP
only as bytes or a data URL) or `data:image/...` URLs, and fingerprint template blobs (ISO/IEC 19794-2 'FMR' and ANSI 378
headers). A picture is not biometric by itself (a course's poster is not), so the engine believes
it only in a table that also holds people's personal information or under a column name that
says photo, face or fingerprint (照片, 人脸, 指纹).

>>> is_valid(b"\\xff\\xd8\\xff\\xe0" + bytes(20))
True
>>> mask(b"...")
'[image]'
"""

from __future__ import annotations

import base64
import binascii
import re

from dereg.classify.base import find_with, whole_value

CATEGORY = "biometric_face"
LEVEL = "sensitive"
EMBEDDED = False
PLAIN_DIGITS = False  # never takes a run of plain digits: image text starts with a header

MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
FINGERPRINT = (b"FMR\x00", b"FIR\x00")
# How base64 text of each of those starts (JPEG, PNG, GIF, RIFF/WebP, HEIC's ftyp box, the two
# fingerprint headers); the decoded bytes are checked after this cheap test.
PATTERN = re.compile(
    r"data:image/(?:jpeg|jpg|png|gif|webp|heic|bmp);base64,|/9j/|iVBORw0KGgo|R0lGOD[dl]h|UklGR"
    r"|AAAA[A-Za-z0-9+/]{4}eXB[ot]|Rk1SA|RklSA"
)


def _is_image(blob: bytes) -> bool:
    if blob.startswith(MAGIC) or blob.startswith(FINGERPRINT):
        return True
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return True
    # BMP: "BM", the file size, then four reserved zero bytes (two letters alone are any text)
    if blob[:2] == b"BM" and len(blob) >= 14 and blob[6:10] == bytes(4):
        return True
    return blob[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1")


def compact(value) -> bytes:
    """The decoded bytes of an image given as bytes, base64 or a data URL (first bytes only)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value[:64])
    text = str(value).strip()
    if text.startswith("data:image/") and ";base64," in text:
        text = text.split(";base64,", 1)[1]
    try:
        return base64.b64decode(text[:88] + "=" * (-len(text[:88]) % 4), validate=False)
    except (binascii.Error, ValueError):
        return b""


def is_valid(value) -> bool:
    if isinstance(value, str) and not PATTERN.match(value.strip()):
        return False
    return _is_image(compact(value))


def mask(value) -> str:
    return "[image]"


# Whole values only, shown as "[image]", never as the picture's bytes.
finditer = whole_value(is_valid, mask)
find = find_with(finditer)
