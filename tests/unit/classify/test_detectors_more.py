"""The detectors beyond the four checksum kinds: examples, decoys and masks for each."""

from __future__ import annotations

from datetime import date

import pytest

from dereg.classify import (
    address,
    bank_card,
    biometric,
    birth_date,
    gender,
    health,
    im_account,
    ip_address,
    landline,
    person_name,
    travel_document,
    uscc,
)
from dereg.classify.engine import find_in_text


@pytest.mark.parametrize(
    ("module", "valid", "invalid"),
    [
        (
            landline,
            ["010-65529988", "(021) 5888 1234", "0571-8765432", "+86 10 6552 9988", "0755 2345 6789 转 801"],
            ["400-800-1234", "800-820-8820", "010-1234567", "0571-1234567", "13812345678", "12345678"],
        ),
        (
            travel_document,
            ["E12345678", "EA1234567", "G12345678", "C12345678", "CA1234567", "H12345678", "台胞证 12345678"],
            ["E1234567", "X12345678", "E11111111", "12345678", "EI1234567"],
        ),
        (uscc, ["91110000600037341L"], ["91110000600037341X", "110105194912310021"]),
        (
            ip_address,
            ["203.0.113.45", "58.215.12.1", "2001:da8:8000::1"],
            ["127.0.0.1", "0.0.0.0", "256.1.1.1", "1.2.3", "224.0.0.1"],
        ),
        (
            im_account,
            ["wxid_abcdefghijklmn", "微信: zhangwei_88", "QQ号 12345678", "QQ: 123456"],
            ["QQ: 0123", "微信: 1abc"],
        ),
        (
            person_name,
            ["张伟", "欧阳娜娜", "Zhang Wei"],
            ["数学提高班", "王老师", "上课认真", "12345", "Piano"],
        ),
        (
            address,
            ["北京市朝阳区建国路88号", "浙江省杭州市西湖区文三路100号3单元502室", "12 Nanjing Road"],
            ["北京市第一中学", "数学", "上课认真，进步明显"],
        ),
        (
            birth_date,
            ["2015-03-01", "2015/3/1", "2015年3月1日", "20150301", date(2015, 3, 1)],
            ["2099-01-01", "1899-12-31", "2015-02-30", "hello"],
        ),
        (gender, ["男", "女性", "F", "male"], ["3", "男孩", "unknown"]),
        (health, ["对花生过敏", "has asthma", "确诊多动症"], ["健康快乐", "数学课", "care"]),
        (
            biometric,
            [
                b"\xff\xd8\xff\xe0" + bytes(20),
                b"\x89PNG\r\n\x1a\n" + bytes(8),
                "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==",
            ],
            [b"plain bytes", "hello", "data:text/plain;base64,aGVsbG8="],
        ),
    ],
)
def test_valid_values_and_decoys(module, valid, invalid):
    for value in valid:
        assert module.is_valid(value), (module.__name__, value)
    for value in invalid:
        assert not module.is_valid(value), (module.__name__, value)


def test_masks_never_show_the_whole_value():
    cases = [
        (landline, "01065529988", "010****9988"),
        (travel_document, "E12345678", "E1*****78"),
        (ip_address, "203.0.113.45", "203.0.*.*"),
        (im_account, "QQ: 12345678", "12****78"),
        (person_name, "欧阳娜娜", "欧***"),
        (address, "北京市朝阳区建国路88号", "北京市***"),
        (birth_date, "2015-03-01", "2015-**-**"),
        (health, "对花生过敏", "[health term]"),
        (biometric, b"\xff\xd8\xff", "[image]"),
    ]
    for module, value, masked in cases:
        assert module.mask(value) == masked


def test_certain_is_stricter_than_valid():
    assert gender.is_valid("1") and not gender.is_certain("1")
    assert person_name.is_valid("Zhang Wei") and not person_name.is_certain("Zhang Wei")
    assert address.is_certain("浙江省杭州市西湖区文三路100号") and not address.is_certain("杭州市西湖区")


def test_free_text_finds_each_kind_once_and_no_decoy():
    text = (
        "家长王女士，电话(010) 6552-9988 转 123，手机+86 138 1234 5678，护照E12345678，"
        "登录IP 203.0.113.45，微信: zhangwei_88，孩子对花生过敏。订单号123456789012345678，"
        "统一社会信用代码91110000600037341L，客服热线400-800-1234，版本1.2.3，学费1280.00元"
    )
    found = [cat for cat, _ in find_in_text(text)]
    assert found == ["phone", "cn_mobile", "passport", "ip_address", "im_account", "health"]
    masked = " ".join(m for _, m in find_in_text(text))
    assert "65529988" not in masked and "12345678" not in masked


def test_a_resident_id_with_a_wrong_check_digit_is_not_a_card():
    typo = "65322119610307785" + "0"  # passes Luhn, starts 65 like a UnionPay card
    assert bank_card.luhn_ok(typo)
    assert not bank_card.is_valid(typo)
    assert bank_card.is_valid("6222021234567894")
