"""The unseen databases (generate.py: clinic and crm on PostgreSQL, school and hr on MariaDB;
round2.py: kindergarten on PostgreSQL, courier on MariaDB, gym on SQLite), each generated with its
fixed seed and loaded once per session into a uniquely named database (a temporary file for
SQLite), dropped afterwards."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import MARIADB_ADMIN_URL, PG_ADMIN_URL, _unavailable
from tests.integration.unseen import generate, round2

HERE = Path(__file__).resolve().parent
#: database -> the module that generates it
MODULES = {**{db: generate for db in generate.DATABASES}, **{db: round2 for db in round2.DATABASES}}


def _create(dbms: str, name: str) -> tuple[sa.Engine, str]:
    if dbms == "postgresql":
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        statement = f'CREATE DATABASE "{name}"'
        url = sa.make_url(PG_ADMIN_URL).set(database=name)
    else:
        admin = sa.create_engine(MARIADB_ADMIN_URL)
        statement = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"
        url = sa.make_url(MARIADB_ADMIN_URL).set(database=name, query={"charset": "utf8mb4"})
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(statement)
    except sa.exc.OperationalError as exc:
        admin.dispose()
        _unavailable(dbms, exc)
    return admin, url.render_as_string(hide_password=False)


def _drop(admin: sa.Engine, dbms: str, name: str) -> None:
    try:
        with admin.begin() as conn:
            if dbms == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.dispose()


@pytest.fixture(scope="session", params=sorted(MODULES))
def unseen(request) -> tuple[str, str, dict]:
    """(database, URL, truth) of one unseen database, loaded; the committed DB.truth.json must be
    what the generator says (regenerate with `python -m tests.integration.unseen.generate` and
    `python -m tests.integration.unseen.round2`)."""
    db = request.param
    module = MODULES[db]
    dbms = module.DATABASES[db][0]
    truth = json.loads((HERE / f"{db}.truth.json").read_text(encoding="utf-8"))
    assert truth == module.truth(db), f"{db}.truth.json is stale: run python -m {module.__name__}"
    if dbms == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"detect_unseen_{db}_")
        url = f"sqlite:///{folder}/{db}.sqlite"
        try:
            module.load(db, url)
            yield db, url, truth
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"detect_unseen_{db}_{uuid.uuid4().hex[:8]}"
    admin, url = _create(dbms, name)
    try:
        module.load(db, url)
        yield db, url, truth
    finally:
        _drop(admin, dbms, name)
