"""Rules added after scanning databases the rules were not written against (issue 16,
tests/integration/unseen/): pinyin and camelCase names, one-character surnames, names before a
greeting, people's names beside companies' without a name hint, health hints in any words,
telephones abroad, a state beside a city, records about an organisation, addresses that are
sentences, drug approval numbers. Each rule on synthetic values, with a case it must leave alone."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from dereg.classify import address, health, landline, names, person_name, travel_document, vehicle_plate
from dereg.classify.engine import classify_source
from dereg.inventory.sql import inventory_source


@pytest.mark.parametrize(
    "column, category",
    [
        ("chushengriqi", "birth_date"),
        ("birthDay", "birth_date"),
        ("jiazhang_xingming", "name"),
        ("fapiao_taitou", "name"),
        ("name_pinyin", "name"),
        ("yonghuming", "account"),
        ("mima", "credential"),
        ("password_digest", "credential"),
        ("jiazhang_shouji", "cn_mobile"),
        ("chief_complaint", "health"),
        ("zhenduan", "health"),
    ],
)
def test_pinyin_and_camel_case_hints(column, category):
    assert category in names.hints(column)


@pytest.mark.parametrize(
    "column, organisation",
    [
        ("company_name", True),
        ("supplier_name", True),
        ("企业名称", True),
        ("name", False),
        ("delivery_company", False),
    ],
)
def test_organisation_names(column, organisation):
    assert names.organisation_name(column) is organisation


@pytest.mark.parametrize(
    "column, is_remark",
    [("备注", True), ("客服备注", True), ("user_note", True), ("beizhu", True), ("notebook", False)],
)
def test_remarks_by_name(column, is_remark):
    assert names.remark(column) is is_remark


def test_licence_plates():
    assert vehicle_plate.is_certain("粤B12345") and vehicle_plate.is_valid("京A D12345")
    assert not vehicle_plate.is_valid("粤BABC12") and not vehicle_plate.is_valid("A123456")
    assert "vehicle" in names.hints("车牌号") and "vehicle" in names.hints("plate_no")


def test_pinyin_profile_parts():
    assert names.profile_part("xuexiao") and names.profile_part("banji")
    assert not names.profile_part("kecheng")


def test_one_character_surnames_and_names_before_a_greeting():
    assert person_name.is_plausible("张") and not person_name.is_valid("张")
    assert person_name.in_context("【某某口腔】张伟您好，您预约的复诊") == ["张伟"]
    assert person_name.in_context("【某某口腔】您好，您预约的复诊") == []
    assert person_name.in_context("王芳推荐入职") == ["王芳"]


def test_an_address_is_not_a_sentence_or_markup():
    assert address.is_valid("广东省深圳市南山区科技园南路88号")
    assert not address.is_valid("<p>本院位于深圳市南山区科技园南路88号。</p>")
    assert not address.is_certain("本院位于深圳市南山区科技园南路88号3楼。欢迎来电")


def test_drug_approval_numbers_are_no_permits():
    assert travel_document.find("国药准字H12345678") == []
    assert travel_document.find("回乡证H12345678") == ["H12345678"]


def test_telephones_abroad_but_not_toll_free():
    assert landline.is_international("+1-408-555-0199") and landline.is_international("+44 20 7946 0958")
    assert not landline.is_international("+1-800-555-0199") and not landline.is_international(
        "+1 (888) 555 0199"
    )
    assert not landline.is_international("+86 13812345678") and not landline.is_international("+12")


def test_a_clinics_diagnoses_are_health_terms():
    assert health.find("急性牙髓炎；建议根管治疗")
    assert health.find("慢性龈炎")


NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏"]
COMPANIES = ["深圳市某某科技有限公司", "某某教育集团", "北京某某文化传播有限公司", "某某贸易公司"]


@pytest.fixture
def found(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'unseen_rules.db'}")
    rows: dict[str, list[tuple]] = {
        "patients (id INTEGER PRIMARY KEY, surname VARCHAR(4), given_name VARCHAR(4), mobile VARCHAR(20))": [
            (i, NAMES[i % 8][0], NAMES[i % 8][1:], f"1391234{i:04d}") for i in range(40)
        ],
        "visits (id INTEGER PRIMARY KEY, chief_complaint VARCHAR(40), health_score INTEGER)": [
            (i, f"右下后牙咬合痛{i % 5 + 1}天", i % 100) for i in range(40)
        ],
        "receipts (id INTEGER PRIMARY KEY, title VARCHAR(40))": [
            (i, COMPANIES[i % 4] if i % 4 == 0 else NAMES[i % 8]) for i in range(40)
        ],
        "company_receipts (id INTEGER PRIMARY KEY, title VARCHAR(40))": [
            (i, COMPANIES[i % 4]) for i in range(40)
        ],
        "sms (id INTEGER PRIMARY KEY, content VARCHAR(200))": [
            (i, f"【某某口腔】{NAMES[i % 8]}您好，您的复诊在明天，改约请致电400-820-0000。")
            for i in range(40)
        ],
        "leads (id INTEGER PRIMARY KEY, full_name VARCHAR(40), phone VARCHAR(30), city VARCHAR(20), "
        "state VARCHAR(4))": [
            (i, f"Mary Smith{'e' * (i % 3)}", f"+1-408-555-{i:04d}", "Austin", "TX") for i in range(40)
        ],
        "members (id INTEGER PRIMARY KEY, mobile VARCHAR(20), state VARCHAR(10))": [
            (i, f"1391234{i:04d}", "active") for i in range(40)
        ],
        "accounts (id INTEGER PRIMARY KEY, company_name VARCHAR(40), main_phone VARCHAR(30), "
        "billing_city VARCHAR(20), billing_zip VARCHAR(10))": [
            (i, f"Acme Systems {i}", f"+1-408-555-{i:04d}", "Austin", f"7{i:04d}") for i in range(40)
        ],
        "suppliers (id INTEGER PRIMARY KEY, supplier_name VARCHAR(40), contact_name VARCHAR(20), "
        "phone VARCHAR(30))": [(i, COMPANIES[i % 4], NAMES[i % 8], f"+1-408-555-{i:04d}") for i in range(40)],
        "employees (id INTEGER PRIMARY KEY, name VARCHAR(20), mobile VARCHAR(20), remark VARCHAR(100), "
        "plate VARCHAR(20))": [
            (
                i,
                NAMES[i % 8],
                f"1391234{i:04d}",
                "有高血压，避免夜班" if i == 3 else "试用期",
                f"粤B{i:03d}2{i % 10}",
            )
            for i in range(40)
        ],
        "parking (id INTEGER PRIMARY KEY, slot VARCHAR(10), car VARCHAR(10))": [
            (i, f"B2-{i:03d}", f"浙A{i:03d}9{i % 10}") for i in range(40)
        ],
        "orders (id INTEGER PRIMARY KEY, remark VARCHAR(100))": [
            (i, "加急" if i % 2 else "") for i in range(40)
        ],
        "company_profile (id INTEGER PRIMARY KEY, company_name VARCHAR(40), legal_rep VARCHAR(20), "
        "registered_address VARCHAR(100), phone VARCHAR(20))": [
            (1, COMPANIES[0], "张伟", "广东省深圳市南山区科技园南路88号某某大厦12楼", "0755-86320000")
        ],
        "articles (id INTEGER PRIMARY KEY, title VARCHAR(40), body TEXT)": [
            (
                i,
                f"口腔护理{i}",
                "<p>本院位于深圳市南山区科技园南路88号。</p><p>预约电话0755-86350000，邮箱 service@example.com。</p>",
            )
            for i in range(20)
        ],
    }
    with engine.begin() as conn:
        for create, values in rows.items():
            conn.exec_driver_sql(f"CREATE TABLE {create}")
            table = create.split(" ", 1)[0]
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values[0]))})", values)
    result = classify_source(
        engine, inventory_source(engine, "unseen_rules"), closure_date=date(2026, 12, 31), subject_table=None
    )
    engine.dispose()
    return {(f.table, f.column): f for f in result.columns}


def test_one_character_surnames_under_a_name_hint(found):
    assert found[("patients", "surname")].categories == ["name"]
    assert found[("patients", "given_name")].categories == ["name"]


def test_a_health_hint_in_any_words_but_not_a_number(found):
    assert found[("visits", "chief_complaint")].categories == ["health"]
    assert not found[("visits", "health_score")].personal


def test_peoples_names_beside_companies_without_a_name_hint(found):
    assert found[("receipts", "title")].categories == ["name"]
    assert not found[("company_receipts", "title")].personal


def test_a_name_before_a_greeting_makes_a_message_personal(found):
    assert "name" in found[("sms", "content")].categories


def test_telephones_abroad_and_a_state_beside_a_city(found):
    assert found[("leads", "phone")].categories == ["phone"]
    assert found[("leads", "state")].categories == ["address"]
    assert not found[("members", "state")].personal  # a status beside no city


def test_a_record_about_an_organisation_holds_its_own_contacts(found):
    for column in ("main_phone", "billing_city", "billing_zip", "company_name"):
        f = found[("accounts", column)]
        assert not f.personal, (column, f.reason)
    assert "record about the organisation" in found[("accounts", "main_phone")].reason
    # a named contact beside the supplier's name: the number is that person's
    assert found[("suppliers", "phone")].personal and found[("suppliers", "contact_name")].personal


def test_one_health_term_makes_a_remark_personal_whatever_its_length(found):
    assert "health" in found[("employees", "remark")].categories
    assert not found[("orders", "remark")].personal


def test_licence_plates_by_shape_and_by_name(found):
    assert found[("employees", "plate")].categories == ["vehicle"]
    assert found[("parking", "car")].categories == ["vehicle"]  # no hint: 90 % have the shape
    assert not found[("parking", "slot")].personal


def test_a_legal_representative_does_not_make_a_company_record_a_persons(found):
    for column in ("company_name", "registered_address", "phone"):
        f = found[("company_profile", column)]
        assert not f.personal, (column, f.reason)


def test_an_article_that_mentions_the_organisations_address_is_not_personal(found):
    f = found[("articles", "body")]
    assert not f.personal, f.reason
