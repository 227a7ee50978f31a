"""Fixtures for the backup tests: a small related source, a location in SeaweedFS, a backup factory."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import sqlalchemy as sa

from dereg.backup.archive import BackupRecord, create_backup
from dereg.connections import S3Location
from dereg.evidence.store import open_store

# Values planted in the small source; none may appear in clear in the bucket or in test output.
GUARDIAN_NAME = "王秀英"
GUARDIAN_ID = "110101198003071234"
GUARDIAN_MOBILE = "13912345678"
GUARDIAN_EMAIL = "wang.xiuying@example.cn"
STUDENT_NAME = "李小龙"
# text that str.splitlines() would cut: line/paragraph separators, NEL, CR, vertical tab, emoji
AWKWARD_TEXT = "第一行\u2028第二行\u2029\x85尾\r\n\x0b\x0c\x1c end 🎒"


def make_small_source(url: str) -> list[str]:
    """Three related tables (guardians <- students <- payments) with dates, decimals, NULLs, Chinese
    text and blobs. Returns the personal values planted."""
    engine = sa.create_engine(url)
    md = sa.MetaData()
    guardians = sa.Table(
        "guardians",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("id_number", sa.String(18)),
        sa.Column("mobile", sa.String(20)),
        sa.Column("email", sa.String(80)),
        sa.Column("note", sa.Text),
    )
    students = sa.Table(
        "students",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("guardian_id", sa.Integer, sa.ForeignKey("guardians.id"), nullable=False),
        sa.Column("name", sa.String(40)),
        sa.Column("born", sa.Date),
        sa.Column("enrolled_at", sa.DateTime),
        sa.Column("photo", sa.LargeBinary),
        sa.Column("active", sa.Boolean),
        sa.Column("height_m", sa.Float),
    )
    payments = sa.Table(
        "payments",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id")),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("paid_on", sa.Date),
        sa.Column("memo", sa.Text),
    )
    md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            guardians.insert(),
            [
                {
                    "id": 1,
                    "name": GUARDIAN_NAME,
                    "id_number": GUARDIAN_ID,
                    "mobile": GUARDIAN_MOBILE,
                    "email": GUARDIAN_EMAIL,
                    "note": AWKWARD_TEXT,
                },
                {"id": 2, "name": "赵敏", "id_number": None, "mobile": None, "email": None, "note": None},
            ],
        )
        conn.execute(
            students.insert(),
            [
                {
                    "id": 10,
                    "guardian_id": 1,
                    "name": STUDENT_NAME,
                    "born": dt.date(2016, 4, 11),
                    "enrolled_at": dt.datetime(2024, 9, 1, 8, 30, 15, 123456),
                    "photo": bytes(range(256)) * 3,
                    "active": True,
                    "height_m": 1.0 / 3.0,
                },
                {
                    "id": 11,
                    "guardian_id": 2,
                    "name": None,
                    "born": None,
                    "enrolled_at": None,
                    "photo": None,
                    "active": False,
                    "height_m": None,
                },
            ],
        )
        conn.execute(
            payments.insert(),
            [
                {
                    "id": i,
                    "student_id": 10 + i % 2,
                    "amount": Decimal("1800.50") + i,
                    "paid_on": dt.date(2025, 1, 1) + dt.timedelta(days=i),
                    "memo": f"学费 第{i}期 " * 3,
                }
                for i in range(1, 201)
            ]
            + [{"id": 999, "student_id": None, "amount": None, "paid_on": None, "memo": None}],
        )
    engine.dispose()
    return [GUARDIAN_NAME, GUARDIAN_ID, GUARDIAN_MOBILE, GUARDIAN_EMAIL, STUDENT_NAME]


@pytest.fixture
def location(seaweed, bucket_name) -> S3Location:
    return S3Location(
        seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "cn-north-1", bucket_name, "closures/b"
    )


@pytest.fixture
def store(store_url):
    engine = open_store(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_source():
    return make_small_source


@pytest.fixture
def planted(sqlite_url) -> list[str]:
    return make_small_source(sqlite_url)


@pytest.fixture
def take_backup(location, keyring, store):
    """Back up a source URL; keyword arguments override the defaults."""
    engines = []

    def take(url: str, **overrides) -> BackupRecord:
        engine = sa.create_engine(url)
        engines.append(engine)
        kwargs = dict(
            company_id="school-1",
            run_id="run-1",
            source_id="db",
            location=location,
            keyring=keyring,
            store=store,
            retention_days=1,
            object_lock=False,
        )
        kwargs.update(overrides)
        return create_backup(engine, **kwargs)

    yield take
    for engine in engines:
        engine.dispose()


@pytest.fixture
def second_mariadb_url(mariadb_url):
    """Another fresh MariaDB database (restore --into), dropped afterwards."""
    import uuid

    from tests.conftest import MARIADB_ADMIN_URL

    admin = sa.create_engine(MARIADB_ADMIN_URL)
    name = f"dereg_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield MARIADB_ADMIN_URL.rstrip("/") + f"/{name}?charset=utf8mb4"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    admin.dispose()


@pytest.fixture
def restored_db(pg_url):
    """A second, empty PostgreSQL database on the same server to restore into."""
    admin = sa.create_engine(pg_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    name = pg_url.rsplit("/", 1)[1] + "_into"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()
