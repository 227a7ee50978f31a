"""Shared fixtures: real servers on loopback (SeaweedFS, SMTP sink, PostgreSQL, MariaDB).

With DEREG_REQUIRE_SERVICES=1 (CI) a missing PostgreSQL or MariaDB fails the test instead of
skipping it.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from dereg.keys import Keyring
from devtools.stack.ports import free_port

PG_ADMIN_URL = os.environ.get("DEREG_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MARIADB_ADMIN_URL = os.environ.get("DEREG_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/")
REQUIRE_SERVICES = os.environ.get("DEREG_REQUIRE_SERVICES") == "1"


def _unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if REQUIRE_SERVICES:
        pytest.fail(message + " and DEREG_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


def pytest_collection_finish(session) -> None:
    """When DAG tests (or others making Airflow homes) are to run, migrate the metadata DB their homes
    copy in the background from now on (tests.dags.harness.start_template_migration)."""

    def makes_homes(item) -> bool:
        module = getattr(item, "module", None)
        return hasattr(module, "AirflowSandbox") or hasattr(module, "migrate_metadata_db")

    if any(makes_homes(item) for item in session.items):
        from tests.dags.harness import start_template_migration

        start_template_migration()


def pytest_sessionfinish(session) -> None:
    harness = sys.modules.get("tests.dags.harness")
    if harness is not None:
        harness.stop_template_migration()


@pytest.fixture(scope="session", autouse=True)
def _isolated_state(tmp_path_factory):
    """Keep tests away from the developer's .state/ folder."""
    state = tmp_path_factory.mktemp("state")
    old = {k: os.environ.get(k) for k in ("DEREG_STATE_DIR", "DEREG_STORE_URL", "DEREG_KEYRING")}
    os.environ["DEREG_STATE_DIR"] = str(state)
    os.environ.pop("DEREG_STORE_URL", None)
    os.environ.pop("DEREG_KEYRING", None)
    yield state
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def store_url(tmp_path) -> str:
    """A fresh, empty compliance store (SQLite file)."""
    return f"sqlite:///{tmp_path / 'compliance.db'}"


@pytest.fixture
def keyring(tmp_path) -> Keyring:
    return Keyring.create(tmp_path / "keyring.json")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'source.db'}"


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database, dropped afterwards."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dereg_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 - any failure means the server is not usable
        _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def mariadb_url():
    """A fresh MariaDB database, dropped afterwards."""
    admin = sa.create_engine(MARIADB_ADMIN_URL)
    name = f"dereg_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    except Exception as exc:  # noqa: BLE001
        _unavailable("MariaDB at 127.0.0.1:3306", exc)
    yield MARIADB_ADMIN_URL.rstrip("/") + f"/{name}?charset=utf8mb4"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    admin.dispose()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real SeaweedFS S3 gateway on loopback for the whole session."""
    from devtools.stack.seaweed import start_seaweedfs

    data = tmp_path_factory.mktemp("seaweed")
    for _ in range(5):
        s3_port = free_port()
        base = free_port()
        try:
            server = start_seaweedfs(data, s3_port, base_port=base)
            break
        except Exception:  # noqa: BLE001 - a port race; pick others
            continue
    else:
        pytest.fail("could not start SeaweedFS on free ports")
    yield server
    server.stop(grace=0)  # scratch data; see SeaweedS3.stop


@pytest.fixture
def s3_client(seaweed):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint_url,
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name="cn-north-1",
    )


@pytest.fixture
def bucket_name() -> str:
    return f"dereg-test-{uuid.uuid4().hex[:12]}"


class SmtpSink:
    def __init__(self, directory: Path, port: int, controller):
        self.directory = directory
        self.port = port
        self.controller = controller

    def messages(self):
        import email
        from email import policy

        return [
            email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(self.directory.glob("*.eml"))
        ]

    @property
    def handler(self):
        return self.controller.handler


@pytest.fixture
def smtp_sink(tmp_path):
    """A real aiosmtpd server on loopback storing each message as a .eml file."""
    from devtools.stack.smtp_sink import start_sink

    port = free_port()
    directory = tmp_path / "mail"
    controller = start_sink(directory, port)
    yield SmtpSink(directory, port, controller)
    controller.stop()
