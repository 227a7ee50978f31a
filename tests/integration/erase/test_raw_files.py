"""After erase and purge, the erased customers' values are in none of the database's own files on
disk: PostgreSQL's relation files under base/<database oid>/, MariaDB's .ibd tablespaces. (The
server's write-ahead and undo logs are cluster-wide and are named as residual risks in the
certificate instead.) This machine's test servers keep their data directories readable to root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from dereg.erase.execute import execute_plan
from dereg.erase.purge import purge
from tests.integration.erase.school import PERSONAL, create_school, school_plan

pytestmark = pytest.mark.integration
KEY = b"r" * 32


def _personal_values(engine: sa.Engine, plan) -> set[bytes]:
    """Every value of a personal column of a table the plan deletes or pseudonymizes (long enough
    to be unambiguous in a file)."""
    values: set[bytes] = set()
    with engine.connect() as conn:
        for action in plan.tables:
            if action.action == "keep":
                continue
            for column in PERSONAL.get(action.table, []):
                for (value,) in conn.execute(sa.text(f"SELECT {column} FROM {action.table}")):
                    if isinstance(value, str) and len(value) >= 8:
                        values.add(value.encode())
    return values


def _files_holding(directory: Path, values: set[bytes]) -> dict[str, int]:
    found: dict[str, int] = {}
    for path in directory.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        hits = sum(1 for v in values if v in data)
        if hits:
            found[path.name] = hits
    return found


def _database_directory(engine: sa.Engine) -> Path:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            root = conn.execute(sa.text("SHOW data_directory")).scalar_one()
            oid = conn.execute(
                sa.text("SELECT oid FROM pg_database WHERE datname = current_database()")
            ).scalar_one()
            return Path(root) / "base" / str(oid)
        root = conn.execute(sa.text("SELECT @@datadir")).scalar_one()
        return Path(root) / engine.url.database


def _flush(engine: sa.Engine) -> None:
    """Write dirty pages to the files: PostgreSQL CHECKPOINT; InnoDB flushes a table's pages for
    FLUSH TABLES ... FOR EXPORT."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("CHECKPOINT"))
            return
        for table in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f"FLUSH TABLES `{table}` FOR EXPORT"))
            conn.execute(sa.text("UNLOCK TABLES"))


@pytest.mark.parametrize("server", ["pg_url", "mariadb_url"])
def test_erased_values_leave_the_database_files(server, request):
    engine = sa.create_engine(request.getfixturevalue(server))
    try:
        create_school(engine)
        plan = school_plan(engine)
        values = _personal_values(engine, plan)
        directory = _database_directory(engine)
        if not os.access(directory, os.R_OK):
            pytest.skip(f"{directory} is not readable by this user")
        _flush(engine)  # make sure the values have reached the files first
        assert len(values) > 100
        assert _files_holding(directory, values), "the check itself must see the values before erasure"

        execute_plan(engine, plan, pseudonym_key=KEY, batch_size=20)
        touched = [t.table for t in plan.tables if t.action != "keep"]
        purge(engine, touched)
        engine.dispose()
        _flush(engine)
        assert _files_holding(directory, values) == {}
    finally:
        engine.dispose()
