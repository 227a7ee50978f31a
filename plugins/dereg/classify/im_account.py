"""Instant-messaging accounts (微信号、QQ号): how a school or shop reaches its customers.

Recognised by their own shape only where that shape is unmistakable: a WeChat internal id
(wxid_ + 14 or more letters and digits), or an account after its label (微信: zhangwei_88,
WeChat ID zhangwei_88, wx：zhangwei_88, QQ: 12345678, QQ号 12345678; an English label needs a
colon or "ID", so "WeChat official account" is no account). A bare WeChat id (6-20 letters, digits, _ and
-, starting with a letter) or QQ number (5-11 digits) is anything; `is_valid` accepts those
shapes for whole values, which the engine believes only under a column name that says so.

Platform ids issued to one person: a WeChat openid or unionid (``o`` + 27 letters, digits, ``_``
and ``-``, with an upper-case letter and a digit, never a word) and an Alipay user id (``2088`` +
12 digits). As whole values their shape is enough (`is_platform_id`; the engine believes a column
of them without a column name). Inside text an Alipay id is found standing alone (not inside a
longer number), an openid after its key (``"openid": "o…"``, ``<openid><![CDATA[o…]]>``,
``unionId=o…``), as payment notifications carry it: a bare 28-character token in prose is too
often something else.

>>> is_valid("微信: zhangwei_88")
True
>>> find("Follow our WeChat official account; WeChat: zhangwei_88")
['zhangwei_88']
>>> mask("QQ: 12345678")
'12****78'
>>> find('{"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "total_fee": 1}')
['oUpF8uMuAJO_M2pxb1Q9zNjWeS6o']
>>> find("paid by oUpF8uMuAJO_M2pxb1Q9zNjWeS6o")  # a bare token in prose: not believed
[]
>>> is_valid("2088102122524333"), is_valid("oooooooooooooooooooooooooooo")
(True, False)
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, in_text

CATEGORY = "im_account"
LEVEL = "general"
EMBEDDED = True

# An English label needs a colon or "ID" before the account: after "WeChat " an English word is
# more often the sentence going on (WeChat official account) than an account.
_WX_LABEL = (
    r"(?:微信号?[:：\s]*"
    r"|(?=[WwVv])(?<![A-Za-z])(?:WeChat|Wechat|wechat|WECHAT|weixin|Weixin|vx|VX|wx|WX)"
    r"(?:\s?(?:ID|Id|id|号)\s?[:：]?|\s?[:：])\s*)"
)
_LABELLED = (
    rf"(?:{_WX_LABEL}(?P<wx>[A-Za-z][-_A-Za-z0-9]{{5,19}})"
    r"|(?=[Qq])(?<![A-Za-z])(?:QQ号?(?:码)?|qq号?)[:：\s]*(?P<qq>[1-9]\d{4,10}))(?![0-9A-Za-z_-])"
)
# An Alipay user id standing alone; a WeChat openid/unionid after its key in JSON, XML or a query
# string. ({5,27}, not {27}: the native search cannot compile a long exact repeat; is_valid
# requires the 28 characters.)
_OPENID_LABELLED = (
    r"(?<![0-9A-Za-z])(?:open|union|Open|Union)_?(?:id|Id|ID)"
    r"(?:[\"']?\s*[:=]\s*[\"']?|>(?:<!\[CDATA\[)?)(?P<oid>o[0-9A-Za-z_-]{5,27})(?![0-9A-Za-z_+/=-])"
)
_PLATFORM = rf"(?<![0-9A-Za-z_+/=-])2088[0-9]{{12}}(?![0-9A-Za-z_+/=-])|{_OPENID_LABELLED}"
PATTERN = re.compile(rf"(?<![0-9A-Za-z_])wxid_[a-z0-9]{{14,22}}(?![0-9A-Za-z_])|{_PLATFORM}|{_LABELLED}")
_LABELLED_RE = re.compile(_LABELLED)
_OPENID_LABELLED_RE = re.compile(_OPENID_LABELLED)
_WXID = re.compile(r"wxid_[a-z0-9]{14,22}")
_OPENID = re.compile(r"o[0-9A-Za-z_-]{27}")
_ALIPAY = re.compile(r"2088[0-9]{12}")


def is_platform_id(text: str) -> bool:
    """A WeChat openid/unionid (with an upper-case letter and a digit, as issued) or an Alipay
    user id: ids a platform gives one person, recognised without a column name."""
    text = str(text).strip()
    if _ALIPAY.fullmatch(text):
        return True
    return bool(
        _OPENID.fullmatch(text)
        and any(c.isupper() for c in text)
        and any(c.isdigit() for c in text)
        and any(c.islower() for c in text[1:])
    )


_BARE = re.compile(r"[A-Za-z][-_A-Za-z0-9]{5,19}|[1-9]\d{4,10}")


def compact(text: str) -> str:
    """The account alone, without its label."""
    text = str(text).strip()
    m = _LABELLED_RE.fullmatch(text)
    if m:
        return m.group("wx") or m.group("qq")
    m = _OPENID_LABELLED_RE.fullmatch(text)
    if m:
        return m.group("oid")
    return text


def is_valid(text: str) -> bool:
    """A wxid_, a labelled account, an openid or Alipay user id, or (whole value under a name hint)
    a bare WeChat id or QQ number."""
    text = str(text).strip()
    m = _OPENID_LABELLED_RE.fullmatch(text)
    if m:
        return is_platform_id(m.group("oid"))
    if _OPENID.fullmatch(text) or _ALIPAY.fullmatch(text):
        return is_platform_id(text)
    return bool(_WXID.fullmatch(text) or _LABELLED_RE.fullmatch(text) or _BARE.fullmatch(text))


def mask(text: str) -> str:
    account = compact(text)
    return account[:2] + "*" * max(len(account) - 4, 1) + account[-2:]


# Only the unmistakable forms the pattern matches: wxid_ ids, platform ids and labelled accounts.
finditer = in_text(PATTERN, is_valid, compact)
find = find_with(finditer)
