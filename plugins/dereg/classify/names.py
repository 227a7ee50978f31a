"""Hints from column names, in English, pinyin (words and initials) and Chinese.

A hint is a guess: for categories that values can prove (ID, mobile, card, e-mail) the engine
only follows a hint that the values confirm; for categories values cannot prove (a name, an
address, a gender) a hint on a column that holds values is enough.
"""

from __future__ import annotations

import re

# token (a whole word of the column name) -> category
_TOKENS = {
    "name": "name", "xm": "name", "xingming": "name", "fullname": "name", "jhr": "name", "jhrxm": "name",
    "gender": "gender", "sex": "gender", "xb": "gender", "xingbie": "gender",
    "birthday": "birth_date", "birth": "birth_date", "dob": "birth_date", "csrq": "birth_date",
    "chushengriqi": "birth_date",
    "idcard": "cn_resident_id", "sfz": "cn_resident_id", "sfzh": "cn_resident_id", "sfzjhm": "cn_resident_id",
    "zjhm": "cn_resident_id", "shenfenzheng": "cn_resident_id", "ssn": "cn_resident_id",
    "mobile": "cn_mobile", "cellphone": "cn_mobile", "sjh": "cn_mobile", "sjhm": "cn_mobile", "shouji": "cn_mobile",
    "phone": "phone", "tel": "phone", "telephone": "phone", "lxdh": "phone", "dh": "phone",
    "email": "email", "mail": "email", "yx": "email", "youxiang": "email", "dzyx": "email",
    "address": "address", "addr": "address", "jtzz": "address", "zz": "address", "dizhi": "address",
    "card": "bank_card", "yhkh": "bank_card", "bankcard": "bank_card", "yhk": "bank_card",
    "health": "health", "allergy": "health", "medical": "health", "jkzk": "health", "diagnosis": "health",
    "wechat": "im_account", "weixin": "im_account", "wx": "im_account", "qq": "im_account",
    "ip": "ip_address", "passport": "passport", "hzh": "passport",
}
# multi-word English names joined by underscores
_PHRASES = {"id_number": "cn_resident_id", "id_no": "cn_resident_id", "id_card": "cn_resident_id",
            "bank_card": "bank_card", "card_no": "bank_card", "birth_date": "birth_date", "date_of_birth":
            "birth_date", "health_notes": "health"}
_CHINESE = [("身份证", "cn_resident_id"), ("证件号", "cn_resident_id"), ("银行卡", "bank_card"), ("卡号", "bank_card"),
            ("手机", "cn_mobile"), ("电话", "phone"), ("邮箱", "email"), ("住址", "address"), ("地址", "address"),
            ("出生", "birth_date"), ("生日", "birth_date"), ("性别", "gender"), ("姓名", "name"), ("监护人", "name"),
            ("健康", "health"), ("过敏", "health"), ("病", "health"), ("微信", "im_account"), ("护照", "passport")]


def hint(column: str) -> str | None:
    """The category a column's name suggests, or None."""
    lowered = column.lower()
    for phrase, category in _PHRASES.items():
        if phrase in lowered:
            return category
    for word, category in _CHINESE:
        if word in column:
            return category
    for token in re.split(r"[^a-z0-9]+", lowered):
        if token in _TOKENS:
            return _TOKENS[token]
    return None
