"""The shapes of `sources[].notify` on a real SQLite file: the subjects' own columns, a profile
table that refers to them, guardians behind a view (no primary key: `key_column`); recipients
counted against SQL written here, subjects without a contact row listed as unreachable, and a
customer's copy holding their rows whichever table their address is in."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dereg.errors import NotifyError
from dereg.manifest.models import NotifySpec
from dereg.notify.fulfil import customer_rows
from dereg.notify.recipients import collect_recipients

pytestmark = pytest.mark.integration

SCHEMA = [
    "CREATE TABLE member (id INTEGER PRIMARY KEY, name TEXT, email TEXT, guardian_id INTEGER)",
    "CREATE TABLE member_profile (pid INTEGER PRIMARY KEY, member_id INTEGER UNIQUE, mail TEXT, nick TEXT)",
    "CREATE TABLE guardian (id INTEGER PRIMARY KEY, name TEXT, email TEXT)",
    "CREATE VIEW guardian_contact AS SELECT id AS gid, name, email FROM guardian",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, member_id INTEGER REFERENCES member(id), total INTEGER)",
    "INSERT INTO member VALUES (1, '甲', 'A@x.cn', 1), (2, '乙', 'a@x.cn', 1), (3, '丙', NULL, 2), "
    "(4, '丁', 'bad', NULL), (5, '戊', 'e@x.cn', 1)",
    "INSERT INTO member_profile VALUES (10, 1, 'p1@x.cn', 'n1'), (11, 3, 'p3@x.cn', 'n3'), (12, 5, 'P1@X.CN', 'n5')",
    "INSERT INTO guardian VALUES (1, '家长一', 'g1@x.cn'), (2, '家长二', '')",
    "INSERT INTO orders VALUES (100, 1, 5), (101, 1, 7), (102, 3, 9)",
]


@pytest.fixture
def engine(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        for statement in SCHEMA:
            conn.exec_driver_sql(statement)
    yield engine
    engine.dispose()


def _recipients(engine, **notify):
    return collect_recipients(
        engine, subject_table="member", notify_table=notify.pop("table", None), **notify
    )


def _scalar(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql(sql).scalar_one()


def test_the_subjects_own_columns(engine):
    got = _recipients(engine, email_column="email", name_column="name")
    expected = _scalar(engine, "SELECT count(DISTINCT lower(email)) FROM member WHERE email LIKE '%_@_%._%'")
    assert len(got.reachable) == expected == 2 and all(r.children == [] for r in got.reachable)
    assert sorted((u.contact_id, u.reason) for u in got.unreachable) == [
        ("3", "no e-mail address"),
        ("4", "invalid e-mail address"),
    ]


def test_a_profile_table_that_refers_to_the_subjects(engine):
    got = _recipients(
        engine, table="member_profile", subject_column="member_id", email_column="mail", name_column="nick"
    )
    assert sorted(r.email.lower() for r in got.reachable) == ["p1@x.cn", "p3@x.cn"]  # one per address
    missing = _scalar(
        engine, "SELECT count(*) FROM member WHERE id NOT IN (SELECT member_id FROM member_profile)"
    )
    assert len(got.unreachable) == missing == 2
    assert {u.reason for u in got.unreachable} == {"no row in member_profile"}
    rows = customer_rows(
        engine,
        subject_table="member",
        notify=NotifySpec(
            table="member_profile", subject_column="member_id", email_column="mail", name_column="nick"
        ),
        address="p3@x.cn",
    )
    assert [r["pid"] for r in rows["member_profile"]] == [11]
    assert [r["id"] for r in rows["member"]] == [3] and [r["id"] for r in rows["orders"]] == [102]


def test_guardians_behind_a_view_need_its_key_column(engine):
    with pytest.raises(NotifyError, match="name the key column"):
        _recipients(
            engine,
            table="guardian_contact",
            link_column="guardian_id",
            email_column="email",
            name_column="name",
        )
    got = _recipients(
        engine,
        table="guardian_contact",
        link_column="guardian_id",
        key_column="gid",
        email_column="email",
        name_column="name",
    )
    assert [(r.email, r.children) for r in got.reachable] == [("g1@x.cn", ["甲", "乙", "戊"])]
    assert sorted((u.contact_id, u.reason) for u in got.unreachable) == [
        ("2", "no e-mail address"),
        ("subject 4", "no row in guardian_contact"),
    ]
    rows = customer_rows(
        engine,
        subject_table="member",
        notify=NotifySpec(
            table="guardian_contact",
            link_column="guardian_id",
            key_column="gid",
            email_column="email",
            name_column="name",
        ),
        address="G1@x.cn",
    )
    assert [r["id"] for r in rows["member"]] == [1, 2, 5] and len(rows["orders"]) == 2


def test_the_subjects_own_row_is_their_copy(engine):
    rows = customer_rows(
        engine,
        subject_table="member",
        notify=NotifySpec(email_column="email", name_column="name"),
        address="e@x.cn",
    )
    assert [r["id"] for r in rows["member"]] == [5] and "orders" not in rows
