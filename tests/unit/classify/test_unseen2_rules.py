"""Rules added after the second round of databases the rules were not written against (issue 16,
tests/integration/unseen/round2.py): abbreviated and prefixed column names, masked mobiles,
kinship, photo paths and binary templates, body measurements, a place's own contacts, document
numbers, SQLite's bare TEXT, health words in the organisation's notices, role words before a
name. Each rule on synthetic values, with a case it must leave alone."""

from __future__ import annotations

import random
from datetime import date

import pytest
import sqlalchemy as sa

from dereg.classify import names, person_name
from dereg.classify.engine import classify_source
from dereg.inventory.sql import inventory_source


@pytest.mark.parametrize(
    "column, category",
    [
        ("LOGIN_NM", "account"),
        ("PWD_HASH", "credential"),
        ("BIRTH_DT", "birth_date"),
        ("GNDR_CD", "gender"),
        ("CUST_EN_NM", "name"),
        ("EMER_CNTCT_NM", "name"),
        ("MOB_NO", "cn_mobile"),
        ("FP_TMPL", "biometric_face"),
        ("t_login", "account"),
        ("c_idcard", "cn_resident_id"),
        ("sign_name", "name"),
        ("c_blood_type", "health"),
        ("g_relation", "family"),
    ],
)
def test_abbreviated_and_prefixed_hints(column, category):
    assert category in names.hints(column)


def test_abbreviations_leave_other_names_alone():
    assert "name" not in names.hints("EMER_CNTCT_MOB")
    assert names.hints("weight_kg") == []
    assert names.hints("c_status") == []
    assert names.is_generic_name("c_name") and not names.is_generic_name("CUST_NM")


def test_abbreviated_address_profile_and_remark_parts():
    assert names.address_part("ZIP_CD") and names.address_part("snd_dist") and names.address_part("rcv_prov")
    assert names.profile_part("OCCUP_NM") and names.profile_part("g_work_unit")
    assert names.remark("RMK") and names.remark("CUST_RMK")
    assert names.postcode("ZIP_CD") and not names.postcode("HOME_ADDR")


def test_body_measures_person_references_documents_and_places():
    assert names.body_measure("HT_CM") == "ht" and names.body_measure("h_weight_kg") == "weight"
    assert names.body_measure("BP_SYS") == "bp" and names.body_measure("体温") == "体温"
    assert names.body_measure("created_at") is None and names.body_measure("temp_file") is None
    assert names.person_reference("h_child_id") and names.person_reference("CUST_ID")
    assert not names.person_reference("COACH_NM") and not names.person_reference("order_id")
    assert names.document_number("f_invoice_no") and names.document_number("ORD_NO")
    assert not names.document_number("mobile_no") and not names.document_number("id_no")
    assert names.place_own_column("STORE_INFO", "STORE_TEL") and names.place_own_column(
        "t_depot", "depot_addr"
    )
    assert not names.place_own_column("t_depot", "manager_mobile")
    assert not names.place_own_column("customer", "customer_tel")


def test_role_words_before_a_name():
    assert person_name.in_context("快递员张伟，未经同意放在门口") == ["张伟"]
    assert person_name.in_context("已签收，签收人：王芳") == ["王芳"]
    assert person_name.in_context("快递员正在派件") == []


NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏"]


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    r = random.Random(7)
    path = tmp_path_factory.mktemp("unseen2") / "rules.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    rows: dict[str, list[tuple]] = {
        "body_checks (id INTEGER PRIMARY KEY, member_id INTEGER, height_cm REAL, weight_kg REAL)": [
            (i, i, 150 + i % 40, 45 + i % 50) for i in range(40)
        ],
        "parcels (id INTEGER PRIMARY KEY, sender_name VARCHAR(20), sender_mobile VARCHAR(20), weight_kg REAL)": [
            (i, NAMES[i % 8], f"1391234{i:04d}", 0.5 + i % 20) for i in range(40)
        ],
        "furniture (id INTEGER PRIMARY KEY, sku VARCHAR(20), height_cm REAL, weight_kg REAL)": [
            (i, f"SKU-{i}", 70 + i, 20 + i) for i in range(40)
        ],
        "morning_checks (id INTEGER PRIMARY KEY, pupil_id INTEGER, temperature REAL)": [
            (i, i, 36.0 + (i % 12) / 10) for i in range(40)
        ],
        "cold_chain (id INTEGER PRIMARY KEY, customer_id INTEGER, temperature REAL)": [
            (i, i, -18.0 + i % 20) for i in range(40)
        ],
        "labels (id INTEGER PRIMARY KEY, receiver_mobile VARCHAR(20), code VARCHAR(20))": [
            (i, f"139****{i:04d}", f"139****{i:04d}") for i in range(40)
        ],
        "pickups (id INTEGER PRIMARY KEY, pickup_name VARCHAR(20), relation VARCHAR(10))": [
            (i, NAMES[i % 8], ["母亲", "外婆", "父亲"][i % 3]) for i in range(40)
        ],
        "edges (id INTEGER PRIMARY KEY, relation VARCHAR(20))": [
            (i, ["depends_on", "blocks"][i % 2]) for i in range(40)
        ],
        "enrolments (id INTEGER PRIMARY KEY, member_id INTEGER, face_template BLOB, photo_url VARCHAR(80))": [
            (i, i, r.randbytes(256), f"https://img.example.cn/face/{i}.jpg") for i in range(40)
        ],
        "products (id INTEGER PRIMARY KEY, sku VARCHAR(20), photo VARCHAR(80))": [
            (i, f"SKU-{i}", f"/img/products/{i}.png") for i in range(40)
        ],
        "store_info (store_cd VARCHAR(8), store_tel VARCHAR(20), store_addr VARCHAR(80), mgr_nm VARCHAR(20), "
        "mgr_mob_no VARCHAR(20))": [
            (f"S{i}", f"0755-2665{i:04d}", f"深圳市南山区科技园南路{i}号", NAMES[i % 8], f"1381234{i:04d}")
            for i in range(8)
        ],
        "customer (id INTEGER PRIMARY KEY, customer_name VARCHAR(20), customer_tel VARCHAR(20))": [
            (i, NAMES[i % 8], f"0755-2665{i:04d}") for i in range(40)
        ],
        "invoices (id INTEGER PRIMARY KEY, invoice_no VARCHAR(20), amount REAL)": [
            (i, f"0571{88230000 + i * 37}", 100.0) for i in range(40)
        ],
        "settings (k TEXT, v TEXT)": [
            ("hotline", "0755-26651288"),
            ("threshold", "0.78"),
            ("sign", "【某某】"),
            ("lang", "zh-CN"),
            ("theme", "dark"),
            ("retry", "3"),
        ],
        "notices (id INTEGER PRIMARY KEY, title VARCHAR(40), body TEXT)": [
            (i, f"园务通知{i}", "各位家长：本周五进行幼儿体检，请咨询园务办公室 0571-88236610。")
            for i in range(20)
        ],
        "diagnoses (id INTEGER PRIMARY KEY, visit_id INTEGER, findings TEXT)": [
            (i, i, "急性牙髓炎，建议根管治疗") for i in range(20)
        ],
    }
    with engine.begin() as conn:
        for create, values in rows.items():
            conn.exec_driver_sql(f"CREATE TABLE {create}")
            table = create.split(" ", 1)[0]
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values[0]))})", values)
    result = classify_source(
        engine, inventory_source(engine, "unseen2_rules"), closure_date=date(2026, 12, 31), subject_table=None
    )
    engine.dispose()
    return {(f.table, f.column): f for f in result.columns}


def test_body_measurements_in_a_persons_record_but_not_a_parcels_or_a_products(found):
    assert found[("body_checks", "height_cm")].categories == ["health"]
    assert found[("body_checks", "weight_kg")].categories == ["health"]
    assert not found[("parcels", "weight_kg")].personal
    assert not found[("furniture", "height_cm")].personal


def test_one_body_temperature_in_a_human_range(found):
    assert found[("morning_checks", "temperature")].categories == ["health"]
    assert not found[("cold_chain", "temperature")].personal


def test_masked_mobiles_under_a_mobile_name_only(found):
    assert "cn_mobile" in found[("labels", "receiver_mobile")].categories
    assert not found[("labels", "code")].personal


def test_kinship_words_under_a_relation_name(found):
    assert found[("pickups", "relation")].categories == ["family"]
    assert not found[("edges", "relation")].personal


def test_templates_and_photo_urls_of_a_person_but_not_a_products_photo(found):
    assert found[("enrolments", "face_template")].categories == ["biometric_face"]
    assert found[("enrolments", "photo_url")].categories == ["biometric_face"]
    assert not found[("products", "photo")].personal


def test_a_places_own_contacts_beside_its_managers(found):
    assert not found[("store_info", "store_tel")].personal
    assert not found[("store_info", "store_addr")].personal
    assert found[("store_info", "mgr_mob_no")].personal
    assert found[("customer", "customer_tel")].personal


def test_a_documents_number_is_no_telephone(found):
    assert not found[("invoices", "invoice_no")].personal


def test_sqlite_text_of_short_settings_is_not_free_text(found):
    assert not found[("settings", "v")].personal


def test_health_words_in_the_organisations_notices_but_not_in_diagnoses(found):
    assert not found[("notices", "body")].personal
    assert "health" in found[("diagnoses", "findings")].categories
