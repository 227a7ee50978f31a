"""The realworld packs (../shared/realworld/: pagila on PostgreSQL, mall on MariaDB), each loaded
once per session with the pack's own load.sh into a uniquely named database, dropped afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import MARIADB_ADMIN_URL, PG_ADMIN_URL, REQUIRE_SERVICES


def _packs() -> Path:
    """DEREG_REALWORLD, else the nearest shared/realworld above the checkout (../shared/realworld
    of the main repository; also found from a clone further down)."""
    if os.environ.get("DEREG_REALWORLD"):
        return Path(os.environ["DEREG_REALWORLD"])
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "realworld").is_dir():
            return parent / "shared" / "realworld"
    return here.parents[4] / "shared" / "realworld"


PACKS = _packs()


def _pack(name: str) -> Path:
    here = PACKS / name
    if not (here / "load.sh").is_file():
        message = f"realworld pack {name} not found under {PACKS} (set DEREG_REALWORLD)"
        if REQUIRE_SERVICES:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return here


def _load(script: Path, database: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", str(script), database],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode:
        # the loaders print counts and timings only; their errors name files and statements
        message = f"{script} failed with status {done.returncode}: {done.stderr[-2000:]}"
        if REQUIRE_SERVICES or done.returncode == 3:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def pagila() -> tuple[str, dict]:
    """(URL, truth) of pagila loaded into a fresh PostgreSQL database."""
    here = _pack("pagila")
    name = f"detect_pagila_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = sa.make_url(PG_ADMIN_URL)
    _load(here / "load.sh", name, {"PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432)})
    yield (
        url.set(database=name).render_as_string(hide_password=False),
        json.loads((here / "truth.json").read_text(encoding="utf-8")),
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def mall() -> tuple[str, dict]:
    """(URL, truth) of mall (N = 2000, the default seed) loaded into a fresh MariaDB database; the
    loader checks that the generated data are the ones truth.json describes (status 3 otherwise)."""
    here = _pack("mall")
    name = f"detect_mall_{uuid.uuid4().hex[:8]}"
    url = sa.make_url(MARIADB_ADMIN_URL)
    _load(
        here / "load.sh",
        name,
        {
            "PYTHON": sys.executable,
            "MYSQL_HOST": url.host or "127.0.0.1",
            "MYSQL_TCP_PORT": str(url.port or 3306),
        },
    )
    yield (
        url.set(database=name).render_as_string(hide_password=False),
        json.loads((here / "truth.json").read_text(encoding="utf-8")),
    )
    admin = sa.create_engine(MARIADB_ADMIN_URL)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    admin.dispose()
