"""Decoys that look like passports, IP addresses, WeChat accounts and images, next to the real ones:
each detector finds the real value in free text and passes over the look-alike."""

from __future__ import annotations

import base64

import pytest

from dereg.classify import biometric, im_account, ip_address, travel_document
from dereg.classify.scanner import personal_spans, scan_block, scan_values


def _found(text: str) -> list[tuple[str, str]]:
    return [(cat, value) for cat, _, _, value in personal_spans(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # dated business codes with a permit's letter: not passports without a label
        ("课程代码 C20240315，学号 H20230001，会员号M20240101", []),
        ("发票号码 E20240315", []),
        # undated shapes are believed bare; every shape after a label
        ("G12345678 and C12345678 alone", [("passport", "G12345678"), ("passport", "C12345678")]),
        ("H1234567890", [("passport", "H1234567890")]),
        ("护照E12345678", [("passport", "E12345678")]),
        ("passport EA1234567 checked", [("passport", "EA1234567")]),
        ("港澳通行证号码：C12345678", [("passport", "C12345678")]),
        ("往来港澳通行证 CA1234567", [("passport", "CA1234567")]),
        ("回乡证号H1234567890", [("passport", "H1234567890")]),
        ("Passport No. G12345678", [("passport", "G12345678")]),
        ("护照号为E20240315", [("passport", "E20240315")]),
        ("台胞证号码：12345678", [("passport", "12345678")]),
        ("证号 12345678", []),
    ],
)
def test_passports_in_free_text(text, expected):
    assert _found(text) == expected


def test_passport_whole_values_need_no_label():
    # a column named passport/护照 holds bare numbers: is_valid accepts every PRC shape
    for value in (
        "E12345678",
        "EA1234567",
        "G12345678",
        "C12345678",
        "CA1234567",
        "H12345678",
        "M1234567890",
    ):
        assert travel_document.is_valid(value), value
        assert travel_document.compact(value) == value
    assert travel_document.compact("护照号：E12345678") == "E12345678"
    assert not travel_document.is_valid("12345678")
    assert not travel_document.is_valid("台胞证 11111111")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("版本 2.1.0.3", []),
        ("版本号：10.2.30.4", []),
        ("Version 10.2.30.4", []),
        ("build 1.2.3.4", []),
        ("1.2.3.4", []),
        ("登录IP：58.215.12.1", [("ip_address", "58.215.12.1")]),
        ("from 203.0.113.45 at 10:30", [("ip_address", "203.0.113.45")]),
        ("价格 12.50 元，版本 1.2.3", []),
    ],
)
def test_ip_addresses_and_version_strings(text, expected):
    assert _found(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Follow our WeChat official account", []),
        ("WeChat Pay payment", []),
        ("devx: abcdef1", []),
        ("WeChat: zhangwei_88", [("im_account", "zhangwei_88")]),
        ("WeChat ID zhangwei_88", [("im_account", "zhangwei_88")]),
        ("wx：zhangwei88", [("im_account", "zhangwei88")]),
        ("家长微信 zhangwei88", [("im_account", "zhangwei88")]),
        ("QQ群 12345678", []),
        ("QQ号码：12345678", [("im_account", "12345678")]),
    ],
)
def test_im_accounts_only_after_a_label(text, expected):
    assert _found(text) == expected
    assert im_account.is_valid("zhangwei_88")  # bare, whole value: believed under a column name


def test_the_fast_paths_agree_with_spans():
    """scan_values and scan_block use each detector's PATTERN and is_valid directly: they must find
    what spans finds, and no more."""
    texts = [
        "课程代码 C20240315",
        "护照号：C12345678",
        "版本 2.1.0.3",
        "登录IP：58.215.12.1",
        "Follow our WeChat official account",
        "wx：zhangwei88",
    ]
    for text in texts:
        want = {cat for cat, _ in _found(text)}
        got = set(scan_values([text])) - {"_values"}
        assert got == want, text
        assert {cat for _, _, cat, _ in scan_block(text + "\n")} == want, text


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def test_images_and_fingerprints_as_base64():
    webp = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(20)
    heic = b"\x00\x00\x00\x18ftypheic" + bytes(20)
    gif = b"GIF89a" + bytes(20)
    fingerprint = b"FMR\x00 20\x00" + bytes(20)
    bmp = b"BM6\x00\x0c\x00" + bytes(4) + b"6\x00\x00\x00" + bytes(10)
    for blob in (webp, heic, gif, fingerprint, bmp):
        assert biometric.is_valid(blob), blob[:12]
    for blob in (webp, heic, gif, fingerprint):
        assert biometric.is_valid(_b64(blob)), blob[:12]
    assert biometric.is_valid("data:image/bmp;base64," + _b64(bmp))
    # text that starts like one of those but decodes to something else; bytes that merely start "BM"
    assert not biometric.is_valid("UklGRxyz")
    assert not biometric.is_valid(b"BMW 320i, blue")
    assert not biometric.is_valid(_b64(b"RIFF\x24\x00\x00\x00WAVEfmt "))


def test_masks_of_labelled_values_hide_the_number():
    assert travel_document.mask("护照号：E12345678") == "E1*****78"
    assert im_account.mask("wx：zhangwei88") == "zh******88"
    assert ip_address.mask("58.215.12.1") == "58.215.*.*"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("座机 0571-87654321", [("phone", "057187654321")]),
        ("电话 +86 10 6552 9988", [("phone", "01065529988")]),
        ("编号 077-48987217", []),  # 077 is no area code; 0774 would be written 0774-...
        ("id c298d177-b84f-0e84-38ad-062135480262", []),  # a UUID's last group
        ("热线 400-820-8820", []),
    ],
)
def test_landlines_grouped_as_written(text, expected):
    assert _found(text) == expected


def test_legacy_resident_ids_need_a_real_region():
    from dereg.classify import cn_resident_id

    assert cn_resident_id.is_valid("110105491231002")  # Beijing Chaoyang, 1949-12-31
    assert cn_resident_id.find("流水号 110105491231002") == ["110105491231002"]
    assert not cn_resident_id.is_valid("119905491231002")  # province 11, but no region 1199xx
    assert not cn_resident_id.is_valid("151702480127964")  # an express number: no region 151702
    assert cn_resident_id.birth_date("110105491231002").isoformat() == "1949-12-31"


def test_names_beyond_doubt_and_words_that_start_with_a_surname():
    from faker import Faker

    from dereg.classify import person_name

    fake = Faker("zh_CN")
    fake.seed_instance(3)
    names = [fake.name() for _ in range(5000)]
    assert sum(map(person_name.is_certain, names)) >= 0.98 * len(names)
    for name in ("傅军", "萧婷婷", "洪建", "赖小明", "欧阳娜娜", "王建业", "李群"):
        assert person_name.is_certain(name), name
    # a column of cities, membership tiers or subjects is not a column of names
    for word in ("苏州", "常州", "温州", "成都", "武汉", "江苏", "黄金会员", "高级", "余额", "游泳", "时间"):
        assert not person_name.is_certain(word), word
