"""The general rules added for data Dereg did not write (issue 16), each on a small SQLite table:
no pack's table or column names, the same rules docs/classification.md lists."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from dereg.classify import address, person_name
from dereg.classify.engine import classify_source
from dereg.classify.names import hints
from dereg.inventory.sql import inventory_source

FIRST = ["MARY", "PATRICIA", "LINDA", "BARBARA", "ELIZABETH", "JENNIFER", "MARIA", "SUSAN"]
LAST = ["SMITH", "JOHNSON", "WILLIAMS", "JONES", "BROWN", "DAVIS", "MILLER", "WILSON"]


@pytest.fixture
def db(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rules.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE members (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, nickname TEXT, "
            "street TEXT, district TEXT, postal_code TEXT, mobile TEXT, wechat_openid TEXT, remark TEXT)"
        )
        conn.exec_driver_sql("CREATE TABLE genres (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
        conn.exec_driver_sql(
            "CREATE TABLE shops (id INTEGER PRIMARY KEY, name TEXT, city TEXT, hotline TEXT)"
        )
        conn.exec_driver_sql("CREATE TABLE drafts (id INTEGER PRIMARY KEY, address TEXT, email TEXT)")
        for i in range(1, 201):
            conn.execute(
                sa.text("INSERT INTO members VALUES (:i, :f, :l, :n, :s, :d, :p, :m, NULL, :r)"),
                {
                    "i": i,
                    "f": FIRST[i % 8],
                    "l": LAST[(i * 3) % 8],
                    "n": ["lucky", "Xiao Yu", "阿强", "小猫咪"][i % 4],
                    "s": f"{i * 7} {['Hanoi', 'Oak', 'Elm'][i % 3]} Way",
                    "d": ["Alberta", "QLD", "Nagasaki"][i % 3],
                    "p": f"{35000 + i}",
                    "m": f"1381234{i:04d}",
                    "r": "已电话联系张伟，同意退货" if i % 5 == 0 else "同意退货",
                },
            )
        for i, genre in enumerate(["Action", "Comedy", "Drama", "Horror"], start=1):
            conn.execute(sa.text("INSERT INTO genres VALUES (:i, :g, 'Sydney')"), {"i": i, "g": genre})
        for i, shop in enumerate(["万和", "方太", "华为", "王府井"], start=1):
            conn.execute(
                sa.text("INSERT INTO shops VALUES (:i, :s, '深圳市', '400-820-8820')"), {"i": i, "s": shop}
            )
    yield engine
    engine.dispose()


def _findings(engine):
    result = classify_source(
        engine, inventory_source(engine, "rules"), closure_date=date(2026, 12, 31), subject_table=None
    )
    return {(f.table, f.column): f for f in result.columns}


def test_latin_names_addresses_and_parts_of_a_persons_record(db):
    found = _findings(db)
    for column in ("first_name", "last_name", "nickname"):
        assert found[("members", column)].categories == ["name"], found[("members", column)].reason
    for column in ("street", "district", "postal_code"):
        assert found[("members", column)].categories == ["address"], found[("members", column)].reason
    assert "name" in found[("members", "remark")].categories  # a name in context, in free text


def test_names_and_cities_outside_a_persons_record_are_not_personal(db):
    found = _findings(db)
    for key in (
        ("genres", "name"),
        ("genres", "city"),
        ("shops", "name"),
        ("shops", "city"),
        ("shops", "hotline"),
    ):
        assert not found[key].personal, (key, found[key].reason)


def test_an_empty_column_is_reported_with_what_its_name_suggests_not_as_personal(db):
    found = _findings(db)
    for column, category in (("address", "address"), ("email", "email")):
        finding = found[("drafts", column)]
        assert not finding.personal
        assert finding.reason.startswith(f"empty, name suggests {category}")
    assert not found[("members", "wechat_openid")].personal


@pytest.mark.parametrize(
    "column, category",
    [
        ("nickname", "name"),
        ("member_nick_name", "name"),
        ("display_name", "name"),
        ("invoice_title", "name"),
        ("username", "account"),
        ("member_username", "account"),
        ("password", "credential"),
        ("job", "employment"),
        ("openid", "im_account"),
        ("unionId", "im_account"),
        ("device_id", "device_id"),
        ("address2", "address"),
    ],
)
def test_name_hints_for_accounts_credentials_jobs_and_platform_ids(column, category):
    assert category in hints(column)


def test_shapes_under_a_name_that_says_so():
    assert person_name.is_plausible("MARY") and person_name.is_plausible("zhang wei")
    assert not person_name.is_valid("MARY")
    assert address.is_plausible("1913 Hanoi Way") and not address.is_plausible("Drama")


@pytest.mark.parametrize(
    "text, names",
    [
        ("已电话联系张伟，同意退货", ["张伟"]),
        ("客服补偿：王芳反馈物流延误", ["王芳"]),
        ("退款请打到我的银行卡，户名李兰英", ["李兰英"]),
        ("订单退货申请管理", []),
        ("后台用户管理", []),
        ("联系客服热线", []),
    ],
)
def test_names_in_free_text_need_context(text, names):
    assert person_name.in_context(text) == names
