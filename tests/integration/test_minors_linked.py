"""Minors found through a table linked one-to-one to the subjects: a `user` table without birth
dates, a `user_profile` (birthday) and a `user_identity` (resident ID number) keyed by `user_id`,
and a `guest_booking` with many rows per user (a guest's birthday there is not the user's). On
SQLite with declared foreign keys, and on MariaDB without any (the links given as inventory links,
as inference gives them). The expected count is computed here from the generated values."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import sqlalchemy as sa

from dereg.classify.engine import classify_source
from dereg.classify.scan import scan_url
from dereg.inventory.sql import inventory_source
from dereg.model import Link

pytestmark = pytest.mark.integration

CLOSURE = dt.date(2026, 12, 31)
USERS = 240
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _resident_id(born: dt.date, serial: int) -> str:
    """An 18-digit resident ID (region 110101) with its ISO 7064 MOD 11-2 check character."""
    body = f"110101{born:%Y%m%d}{serial % 1000:03d}"
    total = sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]


def _under_14(born: dt.date) -> bool:
    age = CLOSURE.year - born.year - ((CLOSURE.month, CLOSURE.day) < (born.month, born.day))
    return age < 14


def _build(engine: sa.Engine, *, foreign_keys: bool) -> int:
    """Create and fill the schema; returns how many users are under 14 by profile or identity."""
    rng = random.Random(15)
    md = sa.MetaData()

    def ref():
        return [sa.ForeignKey("user.id")] if foreign_keys else []

    user = sa.Table(
        "user",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("nickname", sa.String(40)),
        sa.Column("email", sa.String(80)),
    )
    profile = sa.Table(
        "user_profile",
        md,
        sa.Column("user_id", sa.Integer, *ref(), primary_key=True, autoincrement=False),
        sa.Column("birthday", sa.Date),
        sa.Column("school", sa.String(40)),
    )
    identity = sa.Table(
        "user_identity",
        md,
        sa.Column("user_id", sa.Integer, *ref(), primary_key=True, autoincrement=False),
        sa.Column("id_card", sa.String(18)),
    )
    booking = sa.Table(
        "guest_booking",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("user_id", sa.Integer, *ref()),
        sa.Column("guest_birthday", sa.Date),
    )
    md.create_all(engine)

    def born() -> dt.date:
        return dt.date(2004, 1, 1) + dt.timedelta(days=rng.randrange(0, 17 * 365))

    users, profiles, identities, bookings = [], [], [], []
    minors = set()
    for uid in range(1, USERS + 1):
        users.append({"id": uid, "nickname": f"user{uid}", "email": f"u{uid}@example.cn"})
        if uid % 5:  # four in five have a profile, most with a birthday
            day = born() if uid % 7 else None
            profiles.append({"user_id": uid, "birthday": day, "school": "第一中学"})
            if day and _under_14(day):
                minors.add(uid)
        if uid % 3 == 0:  # every third has a resident ID: some agree with the profile, some add a minor
            day = born()
            identities.append({"user_id": uid, "id_card": _resident_id(day, uid)})
            if _under_14(day):
                minors.add(uid)
        for k in range(uid % 3):  # bookings for children who are not users
            bookings.append({"id": uid * 10 + k, "user_id": uid, "guest_birthday": dt.date(2020, 6, 1)})
    with engine.begin() as conn:
        conn.execute(user.insert(), users)
        conn.execute(profile.insert(), profiles)
        conn.execute(identity.insert(), identities)
        conn.execute(booking.insert(), bookings)
    return len(minors)


def _classify(engine, inventory):
    return classify_source(engine, inventory, closure_date=CLOSURE, subject_table="user", sample_size=500)


def _age_columns(result) -> dict[tuple[str, str], list[str]]:
    wanted = {("user_profile", "birthday"), ("user_identity", "id_card")}
    return {(f.table, f.column): f.categories for f in result.columns if (f.table, f.column) in wanted}


def test_minors_through_declared_one_to_one_tables_sqlite(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    try:
        expected = _build(engine, foreign_keys=True)
        assert 10 < expected < USERS / 2
        result = _classify(engine, inventory_source(engine, "platform"))
        assert (result.subjects, result.minors) == (USERS, expected)
        columns = _age_columns(result)
        assert (
            "minor" in columns[("user_profile", "birthday")]
            and "minor" in columns[("user_identity", "id_card")]
        )
        categories = {(f.table, f.column): f.categories for f in result.columns}
        assert "birth_date" in categories[("guest_booking", "guest_birthday")]  # found, but not the user's
        levels = {(f.table, f.column): f.level for f in result.columns}
        assert levels[("user", "email")] == "sensitive"  # the subjects include children

        # `dereg scan` without a subject table: the profile tables are counted with `user`, the
        # bookings (many per user) on their own
        with engine.connect() as conn:
            guests = conn.exec_driver_sql("SELECT count(*) FROM guest_booking").scalar_one()
        report = scan_url(sqlite_url, sample_size=500, closure_date=CLOSURE)
        assert (report["subjects"], report["minors"]) == (USERS + guests, expected + guests)
    finally:
        engine.dispose()


def test_minors_through_inferred_links_mariadb(mariadb_url):
    engine = sa.create_engine(mariadb_url)
    try:
        expected = _build(engine, foreign_keys=False)
        inventory = inventory_source(engine, "platform")
        inventory.links = []
        bare = _classify(engine, inventory)
        assert bare.minors == 0  # nothing links the tables yet: the user table has no birth dates
        inventory.links = [
            Link(t, ["user_id"], "user", ["id"], kind="inferred", evidence={"rule": "test"})
            for t in ("user_profile", "user_identity", "guest_booking")
        ]
        result = _classify(engine, inventory)
        assert (result.subjects, result.minors) == (USERS, expected)
    finally:
        engine.dispose()
