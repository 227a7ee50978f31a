"""Name hints, the taxonomy file, and finding identifiers in free text."""

from __future__ import annotations

import pytest

from dereg.classify.engine import find_in_text, has_identifier, is_under
from dereg.classify.names import hints
from dereg.classify.taxonomy import level_of, load_taxonomy

ID = "11010519491231002X"


@pytest.mark.parametrize(
    "column, category",
    [
        ("xm", "name"),
        ("姓名", "name"),
        ("payer_name", "name"),
        ("jhr", "name"),
        ("监护人", "name"),
        ("xb", "gender"),
        ("性别", "gender"),
        ("csrq", "birth_date"),
        ("出生日期", "birth_date"),
        ("birth_date", "birth_date"),
        ("sfzh", "cn_resident_id"),
        ("id_number", "cn_resident_id"),
        ("身份证号", "cn_resident_id"),
        ("sjh", "cn_mobile"),
        ("手机", "cn_mobile"),
        ("payer_mobile", "cn_mobile"),
        ("lxdh", "phone"),
        ("联系电话", "phone"),
        ("jtzz", "address"),
        ("家庭住址", "address"),
        ("yhkh", "bank_card"),
        ("银行卡号", "bank_card"),
        ("payer_bank_card", "bank_card"),
        ("健康", "health"),
        ("过敏", "health"),
        ("health_notes", "health"),
        ("email", "email"),
        ("GuardianEmail", "email"),
    ],
)
def test_name_hints(column, category):
    assert category in hints(column)


@pytest.mark.parametrize(
    "column",
    [
        "id",
        "guardian_id",
        "voucher_no",
        "title",
        "course_name",
        "amount",
        "contract_ref",
        "summary",
        "status",
        "booked_on",
    ],
)
def test_names_that_say_nothing(column):
    assert hints(column) == []


def test_taxonomy_lists_every_category_with_its_level():
    taxonomy = load_taxonomy()
    expected = {
        "name",
        "gender",
        "birth_date",
        "minor",
        "cn_resident_id",
        "passport",
        "cn_mobile",
        "phone",
        "email",
        "address",
        "bank_card",
        "im_account",
        "ip_address",
        "health",
        "biometric_face",
    }
    assert expected <= set(taxonomy)
    sensitive = {c.id for c in taxonomy.values() if c.level == "sensitive"}
    assert {"cn_resident_id", "passport", "bank_card", "health", "biometric_face", "minor"} <= sensitive
    assert not {"name", "email", "cn_mobile", "address"} & sensitive
    assert all(c.zh and c.en for c in taxonomy.values())
    assert level_of([]) is None
    assert level_of(["name", "bank_card"]) == "sensitive"
    assert level_of(["name"]) == "general"


def test_find_in_text_returns_masked_hits_only():
    text = f"家长手机：13812345678，身份证号{ID}，邮箱 wang.fang@example.com，卡号 6222 0212 3456 7894。"
    found = find_in_text(text)
    assert found == [
        ("cn_mobile", "138****5678"),
        ("cn_resident_id", "1101**********002X"),
        ("email", "w***@example.com"),
        ("bank_card", "6222 **** **** 7894"),
    ]
    assert not any(raw in str(found) for raw in ("13812345678", ID, "wang.fang", "6222021234567894"))


def test_an_id_that_also_passes_luhn_is_reported_once_as_an_id():
    # 62xxxx (Gansu) IDs start like UnionPay cards; take one whose 18 digits also pass Luhn, so that
    # only the resident-ID rules (the card's ID-shape check, the scanner's priority) tell them apart
    from dereg.classify import bank_card, cn_resident_id

    numbers = []
    for seq in range(100, 1000):
        body = f"62010220150301{seq}"
        number = body + cn_resident_id.calc_check_digit(body)
        if number.isdigit() and bank_card.luhn_ok(number):
            numbers.append(number)
    assert numbers, "no Gansu resident ID in the range passes Luhn"
    number = numbers[0]
    assert cn_resident_id.is_valid(number)
    assert number.startswith(bank_card.PREFIXES) and 16 <= len(number) <= 19  # card-shaped
    assert not bank_card.is_valid(number)
    assert find_in_text(number) == [("cn_resident_id", cn_resident_id.mask(number))]
    assert [c for c, _ in find_in_text(f"身份证 {number}，已核对")] == ["cn_resident_id"]


@pytest.mark.parametrize(
    "text",
    [
        "记-202503-0042",
        "2025-03-04",
        "12345.00",
        "tok_3f9a1c0d2b7e4a55",
        "tok_13812345678abcd",
        "订单 202503150000012345",
        "第3次课，得分95分",
        "",
        "邮编 100020",
    ],
)
def test_things_that_are_not_identifiers(text):
    assert find_in_text(text) == []
    assert not has_identifier(text)


def test_minor_age_on_closure_date():
    from datetime import date

    closure = date(2026, 12, 31)
    assert is_under(14, date(2013, 1, 1), closure)  # 14th birthday on 2027-01-01
    assert not is_under(14, date(2012, 12, 31), closure)  # turns 14 on the closure date
    assert is_under(14, date(2012, 2, 29), date(2026, 2, 28))
    assert not is_under(14, date(2012, 2, 29), date(2026, 3, 1))
