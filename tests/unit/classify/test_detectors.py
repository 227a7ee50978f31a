"""Detectors: checksums, boundaries and masks of each kind of identifier."""

from __future__ import annotations

import pytest

from dereg.classify import ALL_DETECTORS, bank_card, cn_mobile, cn_resident_id, email
from dereg.classify.scanner import NOT_PERSONAL
from dereg.classify.taxonomy import load_taxonomy

VALID_ID = "11010519491231002X"  # GB 11643 example: Beijing Chaoyang, born 1949-12-31


def make_id(region: str, born: str, seq: str) -> str:
    body = region + born + seq
    return body + cn_resident_id.calc_check_digit(body + "0")


@pytest.mark.parametrize("module", ALL_DETECTORS)
def test_every_detector_has_the_same_surface(module):
    personal = module.CATEGORY not in NOT_PERSONAL
    assert isinstance(module.CATEGORY, str)
    assert module.LEVEL in ({"general", "sensitive"} if personal else {None})
    assert isinstance(module.EMBEDDED, bool)
    assert hasattr(module.PATTERN, "finditer")
    if personal:
        assert module.CATEGORY in load_taxonomy()
    for verb in ("compact", "is_valid", "mask", "finditer", "find"):
        assert callable(getattr(module, verb))


class TestResidentId:
    def test_valid_18_digit_numbers(self):
        assert cn_resident_id.is_valid(VALID_ID)
        assert cn_resident_id.is_valid(VALID_ID.lower())
        assert cn_resident_id.is_valid(make_id("440305", "20150301", "123"))

    def test_wrong_check_digit(self):
        assert not cn_resident_id.is_valid(VALID_ID[:-1] + "1")

    def test_right_check_digit_but_impossible_birth_date_or_region(self):
        assert not cn_resident_id.is_valid(make_id("110105", "20150230", "123"))  # 30 February
        assert not cn_resident_id.is_valid(make_id("110105", "18990101", "123"))  # before 1900
        assert not cn_resident_id.is_valid(make_id("110105", "29990101", "123"))  # in the future
        assert not cn_resident_id.is_valid(make_id("990105", "20150301", "123"))  # no province 99

    def test_order_numbers_of_18_digits_are_not_ids(self):
        for number in (
            "202503150000012345",
            "100000000000000001",
            "123456789012345678",
            "202611220001000042",
        ):
            assert not cn_resident_id.is_valid(number), number
            assert cn_resident_id.find(f"订单号 {number} 已支付") == []

    def test_15_digit_form(self):
        assert cn_resident_id.is_valid("110105491231002")
        assert not cn_resident_id.is_valid("110105491331002")  # month 13

    def test_birth_date(self):
        from datetime import date

        assert cn_resident_id.birth_date(VALID_ID) == date(1949, 12, 31)
        assert cn_resident_id.birth_date("110105491231002") == date(1949, 12, 31)

    def test_digit_boundaries(self):
        assert cn_resident_id.find(f"身份证号{VALID_ID}，已核对") == [VALID_ID]
        assert cn_resident_id.find(f"9{VALID_ID}") == []  # inside a longer number
        assert cn_resident_id.find(f"{VALID_ID[:-1]}12") == []
        assert cn_resident_id.find(f"tok_{VALID_ID}") == []  # inside a token

    def test_mask(self):
        assert cn_resident_id.mask(VALID_ID) == "1101**********002X"
        assert cn_resident_id.mask("110105491231002") == "1101*******1002"


class TestMobile:
    @pytest.mark.parametrize(
        "text",
        [
            "13812345678",
            "+86 138-1234-5678",
            "0086 13812345678",
            "138 1234 5678",
            "+8619912345678",
            "16612345678",
        ],
    )
    def test_valid(self, text):
        assert cn_mobile.is_valid(text)
        assert cn_mobile.find(f"家长电话：{text}。") == [cn_mobile.compact(text)]

    @pytest.mark.parametrize(
        "text", ["12345678901", "23812345678", "1381234567", "138123456789", "010-12345678"]
    )
    def test_invalid(self, text):
        assert not cn_mobile.is_valid(text)

    def test_digit_boundaries(self):
        assert cn_mobile.find("编号913812345678") == []
        assert cn_mobile.find("13812345678901") == []
        assert cn_mobile.find("tok_13812345678abcd") == []

    def test_mask(self):
        assert cn_mobile.mask("13812345678") == "138****5678"
        assert cn_mobile.mask("+86 138-1234-5678") == "138****5678"


class TestEmail:
    def test_valid_and_invalid(self):
        assert email.is_valid("zhang.wei@example.com")
        assert email.is_valid("li_na+school@mail.example.cn")
        for bad in ("zhang@", "@example.com", "a..b@example.com", "zhang@example", "zhang wei@example.com"):
            assert not email.is_valid(bad), bad

    def test_find_in_text(self):
        assert email.find("请发送至 zhang.wei@example.com，谢谢") == ["zhang.wei@example.com"]

    def test_mask(self):
        assert email.mask("zhang.wei@example.com") == "z***@example.com"


class TestBankCard:
    CARD = "6222021234567894"  # UnionPay prefix, Luhn-valid

    def test_luhn_and_prefix(self):
        assert bank_card.is_valid(self.CARD)
        assert bank_card.is_valid("6222 0212 3456 7894")
        assert bank_card.is_valid("4012888888881881")  # a Visa test number
        assert not bank_card.is_valid("6222021234567895")  # Luhn fails
        assert not bank_card.is_valid("1234567812345670")  # Luhn ok, no known issuer
        assert not bank_card.is_valid("622202123456789")  # 15 digits

    def test_19_digit_unionpay(self):
        partial = "622848123456789012"
        check = next(d for d in "0123456789" if bank_card.luhn_ok(partial + d))
        assert bank_card.is_valid(partial + check)

    def test_digit_boundaries(self):
        assert bank_card.find(f"卡号{self.CARD}") == [self.CARD]
        assert bank_card.find(f"1{self.CARD}1234") == []

    def test_mask(self):
        assert bank_card.mask(self.CARD) == "6222 **** **** 7894"
        assert bank_card.mask("6222 0212 3456 7894") == "6222 **** **** 7894"
