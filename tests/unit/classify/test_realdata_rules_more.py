"""More general rules for data Dereg did not write (issue 16): platform ids by shape, names in file
names and invoice titles, a person's school and job, and the organisation's own contacts. Each
rule on a small SQLite table of synthetic values; no pack's table or column names."""

from __future__ import annotations

import json
from datetime import date

import pytest
import sqlalchemy as sa

from dereg.classify import device_id, email, im_account, names, person_name
from dereg.classify.engine import classify_source
from dereg.classify.scanner import spans
from dereg.inventory.sql import inventory_source

OPENID = "oAbC1dEfG2hIjK3lMnO4pQrS5tU6"  # synthetic: o + 27, as WeChat issues them
UNIONID = "o9Zy_8XwV-7uTsR6qPoN5mLkJ4iH"
ALIPAY_USER = "2088000000000001"


@pytest.mark.parametrize("value", [OPENID, UNIONID, ALIPAY_USER])
def test_platform_ids_by_shape(value):
    assert im_account.is_platform_id(value) and im_account.is_valid(value)
    # inside text: an Alipay id standing alone; an openid only after its key
    assert im_account.find(f"paid by {value}, thank you") == ([value] if value == ALIPAY_USER else [])
    assert im_account.find(f"openid={value}&fee=1") == ([] if value == ALIPAY_USER else [value])


@pytest.mark.parametrize(
    "value",
    [
        "o" * 28,  # no upper-case letter, no digit: not as issued
        "organisationalrestructurings",  # a long word
        OPENID[:-1],  # 27 characters
        OPENID + "X",  # 29
        "20880000000000012",  # 17 digits
        "3088000000000001",
    ],
)
def test_platform_id_shapes_that_are_not(value):
    assert not im_account.is_platform_id(value)
    assert im_account.find(f"ref {value} end") == []


def test_platform_ids_inside_payment_notifications_but_not_inside_a_blob():
    notice_json = json.dumps({"appid": "wx0000000000000000", "openid": OPENID, "total_fee": 100})
    notice_xml = f"<xml><openid><![CDATA[{OPENID}]]></openid><buyer_id>{ALIPAY_USER}</buyer_id></xml>"
    assert im_account.find(notice_json) == [OPENID]
    assert im_account.find(notice_xml) == [OPENID, ALIPAY_USER]
    assert im_account.find(f"data:image/png;base64,iVBOR{OPENID}+/AAA=") == []
    assert [s[0] for s in spans(notice_json)] == ["im_account"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("张伟_13812345678_成绩单.pdf", {"name": "张伟", "cn_mobile": "13812345678"}),
        ("uploads/2024/报名表-王芳.docx", {"name": "王芳"}),
        ("李娜同学的作业.jpg", {"name": "李娜"}),
        ("13900001111.png", {"cn_mobile": "13900001111"}),
        ("课程介绍.pdf", {}),
        ("成长报告_2024.pdf", {}),
        ("王者荣耀_截图.png", {}),
        ("张伟", {}),  # not a file name
        ("刘洋_成绩单", {}),
    ],
)
def test_people_in_file_names(text, expected):
    assert person_name.in_file_name(text) == expected


@pytest.mark.parametrize(
    "text, organisation",
    [
        ("深圳市某某教育科技有限公司", True),
        ("某某集团", True),
        ("Acme Trading Co., Ltd", True),
        ("某某实验学校", True),
        ("张伟", False),
        ("Wang Fang", False),
        ("欧阳娜娜", False),
    ],
)
def test_organisation_names(text, organisation):
    assert person_name.is_organisation(text) is organisation


def test_names_in_titles_need_context():
    assert person_name.in_context("王芳的请假申请") == ["王芳"]
    assert person_name.in_context("期末的请假申请") == []


@pytest.mark.parametrize(
    "address, role",
    [("service@example.com", True), ("HR@example.com", True), ("noreply+x@example.com", True)]
    + [("zhang.wei@example.com", False), ("wangfang88@example.com", False)],
)
def test_role_addresses(address, role):
    assert email.is_role_address(address) is role


@pytest.mark.parametrize(
    "column, profile",
    [("school", True), ("class_name", True), ("company", True), ("工作单位", True), ("job_title", True)]
    + [("delivery_company", False), ("school_id", False), ("title", False), ("class_id", False)],
)
def test_profile_parts(column, profile):
    assert names.profile_part(column) is profile


SURNAMED = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨帆", "赵磊", "黄敏"]
COMPANIES = ["深圳市某某科技有限公司", "某某教育集团", "北京某某文化传播有限公司", "某某贸易公司"]


@pytest.fixture
def db(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rules_more.db'}")
    rows: dict[str, list[tuple]] = {
        "profiles (id INTEGER PRIMARY KEY, name VARCHAR(20), mobile VARCHAR(20), school VARCHAR(40), "
        "class_name VARCHAR(20), company VARCHAR(40))": [
            (i, SURNAMED[i % 8], f"1391234{i:04d}", "某某第一中学", f"{i % 6 + 1}班", "某某科技有限公司")
            for i in range(40)
        ],
        "schools (id INTEGER PRIMARY KEY, school TEXT, city TEXT)": [
            (i, f"某某第{i}中学", "深圳市") for i in range(10)
        ],
        "payments (id INTEGER PRIMARY KEY, amount INTEGER, notify TEXT, payer_ref VARCHAR(40))": [
            (
                i,
                100,
                json.dumps({"openid": OPENID[:-2] + f"{i:02d}", "total_fee": 100}),
                UNIONID[:-2] + f"{i:02d}",
            )
            for i in range(30)
        ],
        "invoices (id INTEGER PRIMARY KEY, amount INTEGER, invoice_title TEXT)": [
            (i, 100, COMPANIES[i % 4] if i % 3 else SURNAMED[i % 8]) for i in range(30)
        ],
        "company_invoices (id INTEGER PRIMARY KEY, amount INTEGER, invoice_title TEXT)": [
            (i, 100, COMPANIES[i % 4]) for i in range(30)
        ],
        "uploads (id INTEGER PRIMARY KEY, size INTEGER, file_name TEXT)": [
            (i, 100, f"{SURNAMED[i % 8]}_1380000{i:04d}_成绩单.pdf" if i % 2 else f"课件{i}.pptx")
            for i in range(20)
        ],
        "attachments (id INTEGER PRIMARY KEY, size INTEGER, file_name TEXT)": [
            (i, 100, f"课程介绍_{i}.pdf") for i in range(20)
        ],
        "courses (id INTEGER PRIMARY KEY, title TEXT, summary TEXT)": [
            (i, f"钢琴提高班{i}", f"第{i}期，小班教学，咨询电话 13800001111，欢迎试听") for i in range(20)
        ],
        "settings (id INTEGER PRIMARY KEY, k TEXT, v TEXT)": [
            (1, "site", "某某培训"),
            (2, "service_mail", "service@example.com"),
            (3, "hr_mail", "hr@example.com"),
            (4, "bcc", "noreply@example.com"),
            (5, "theme", "blue"),
        ],
        "depots (id INTEGER PRIMARY KEY, name VARCHAR(20), phone VARCHAR(20), title VARCHAR(20))": [
            (i, "李娜", "13800002222", f"仓库{i}") for i in range(5)
        ],
        "pages (id INTEGER PRIMARY KEY, title VARCHAR(20), body TEXT)": [
            (1, "简墨", "<p>theme</p>"),
            (2, "高远", "<p>welcome</p>"),
            (3, "林海", "<p>about</p>"),
        ],
        "teachers (id INTEGER PRIMARY KEY, title VARCHAR(20), mobile VARCHAR(20))": [
            (1, "简墨", "13800003331"),
            (2, "高远", "13800003332"),
            (3, "林海", "13800003333"),
        ],
    }
    with engine.begin() as conn:
        for create, values in rows.items():
            conn.exec_driver_sql(f"CREATE TABLE {create}")
            table = create.split(" ", 1)[0]
            marks = ", ".join("?" * len(values[0]))
            conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({marks})", values)
    yield engine
    engine.dispose()


@pytest.fixture
def found(db):
    result = classify_source(
        db, inventory_source(db, "rules_more"), closure_date=date(2026, 12, 31), subject_table=None
    )
    return {(f.table, f.column): f for f in result.columns}


def test_a_persons_school_class_and_employer_in_their_profile_only(found):
    for column in ("school", "class_name", "company"):
        f = found[("profiles", column)]
        assert f.categories == ["employment"], (column, f.reason)
    assert not found[("schools", "school")].personal


def test_an_openid_inside_a_payment_notification_and_a_column_of_them(found):
    assert "im_account" in found[("payments", "notify")].categories
    assert found[("payments", "payer_ref")].categories == ["im_account"]  # by shape, no name hint
    assert not found[("payments", "amount")].personal


def test_invoice_titles_of_individuals_beside_companies(found):
    assert found[("invoices", "invoice_title")].categories == ["name"]
    assert "company or institution" in found[("invoices", "invoice_title")].reason
    assert not found[("company_invoices", "invoice_title")].personal


def test_names_and_mobiles_inside_uploaded_file_names(found):
    assert set(found[("uploads", "file_name")].categories) == {"name", "cn_mobile"}
    assert not found[("attachments", "file_name")].personal


def test_the_organisations_own_contacts_are_not_a_customers(found):
    for key in (("courses", "summary"), ("settings", "v")):
        f = found[key]
        assert not f.personal, (key, f.reason)
        assert f.reason.startswith("the organisation's own contact"), f.reason
    # a named contact's mobile, repeated, stays personal: a staff member's number is theirs
    assert found[("depots", "phone")].personal
    assert found[("depots", "name")].personal


def test_a_few_surname_titles_are_not_a_table_of_people(found):
    assert not found[("pages", "title")].personal
    assert "not a table of people" in found[("pages", "title")].reason
    assert found[("teachers", "title")].categories == ["name"]  # beside a person's mobile


def test_the_manifests_own_contacts_are_never_personal(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'own.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notices (id INTEGER PRIMARY KEY, body TEXT, reply VARCHAR(40))")
        conn.exec_driver_sql(
            "INSERT INTO notices VALUES (?, ?, ?)",
            [
                (
                    i,
                    f"第{i}期开课，咨询 13800004444 或 school.office@example.com",
                    "school.office@example.com",
                )
                for i in range(3)
            ]
            + [(9 + i, f"已联系 1390000555{i}", f"li.na.199{i}@example.com") for i in range(3)],
        )
    own = ["客服 13800004444", "school.office@example.com"]
    try:
        for full in (False, True):
            result = classify_source(
                engine,
                inventory_source(engine, "own"),
                closure_date=date(2026, 12, 31),
                subject_table=None,
                full=full,
                own_contacts=own,
            )
            by_column = {f.column: f for f in result.columns}
            # the customer's mobile and address are found; the school's own are not counted
            assert by_column["body"].categories == ["cn_mobile"], by_column["body"].reason
            assert by_column["body"].matches == 3
            assert "organisation's own contacts" in by_column["body"].reason
            assert by_column["reply"].categories == ["email"]
            assert by_column["reply"].matches == 3
    finally:
        engine.dispose()


def test_a_few_surname_titles_linked_to_people_are_names(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'linked.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE members (id INTEGER PRIMARY KEY, mobile VARCHAR(20))")
        conn.exec_driver_sql(
            "CREATE TABLE contacts (id INTEGER PRIMARY KEY, title VARCHAR(20), "
            "member_id INTEGER REFERENCES members(id))"
        )
        conn.exec_driver_sql("INSERT INTO members VALUES (?, ?)", [(i, f"1380000{i:04d}") for i in range(5)])
        conn.exec_driver_sql(
            "INSERT INTO contacts VALUES (?, ?, ?)", [(1, "简墨", 1), (2, "高远", 2), (3, "林海", 3)]
        )
    try:
        result = classify_source(
            engine, inventory_source(engine, "linked"), closure_date=date(2026, 12, 31), subject_table=None
        )
        title = next(f for f in result.columns if f.column == "title")
        assert title.categories == ["name"], title.reason
        assert title.reason.startswith("linked to members")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "value, device",
    [
        ("490154203237518", True),  # an IMEI with its Luhn digit (a documentation example)
        ("6D92078A-8246-4BA4-AE5B-76104861E7DC", True),  # an advertising id
        ("9774d56d682e549c", True),  # an Android ID
        ("490154203237519", False),  # wrong check digit
        ("0000000000000000", False),  # unset
        ("ios", False),
        ("web", False),
    ],
)
def test_device_id_shapes(value, device):
    assert device_id.is_valid(value) is device


def test_a_device_column_by_name_and_shape(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'devices.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY, device_id VARCHAR(40), imei VARCHAR(20))"
        )
        conn.exec_driver_sql(
            "INSERT INTO sessions VALUES (?, ?, ?)",
            [(i, f"6D92078A-8246-4BA4-AE5B-{i:012d}", ["ios", "web", "android"][i % 3]) for i in range(12)],
        )
    try:
        result = classify_source(
            engine, inventory_source(engine, "devices"), closure_date=date(2026, 12, 31), subject_table=None
        )
        by_column = {f.column: f for f in result.columns}
        assert by_column["device_id"].categories == ["device_id"], by_column["device_id"].reason
        assert not by_column["imei"].personal  # device types, not devices: the values contradict the name
        assert "contradicted" in by_column["imei"].reason
    finally:
        engine.dispose()
