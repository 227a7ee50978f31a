"""Fixtures of the erasure tests: the school schema on each dialect (helpers in school.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.integration.erase.school import School


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.integration),
        pytest.param("mariadb", marks=pytest.mark.integration),
    ]
)
def school(request) -> School:
    """The school schema with its rows, on each of the three dialects."""
    url = request.getfixturevalue(
        {"sqlite": "sqlite_url", "postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param]
    )
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA foreign_keys=ON"))
    school = School(engine, url)
    school.create()
    yield school
    engine.dispose()
