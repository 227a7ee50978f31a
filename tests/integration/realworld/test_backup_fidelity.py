"""A backup restores a working database, not only its rows (issue 17): pagila backed up and restored
`--into` a fresh PostgreSQL database has the same schema by pg_dump and the same rows; mall
(MariaDB) the same SHOW CREATE TABLE and rows. Checked independently of Dereg's own verification."""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest
import sqlalchemy as sa

from dereg.backup.archive import create_backup
from dereg.backup.restore import restore_and_verify
from dereg.connections import S3Location
from dereg.errors import BackupError
from dereg.evidence.store import open_store
from tests.conftest import PG_ADMIN_URL


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
def other_pg_url(pg_url):
    """A second fresh PostgreSQL database on the same server."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"schema_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def backup_of(location, keyring, store):
    def take(url: str) -> str:
        engine = sa.create_engine(url)
        try:
            record = create_backup(
                engine,
                company_id="co",
                run_id="run-1",
                source_id="db",
                location=location,
                keyring=keyring,
                store=store,
                retention_days=1,
                object_lock=False,
            )
        finally:
            engine.dispose()
        return record.backup_id

    return take


def _pg_schema(url: str) -> str:
    """pg_dump --schema-only, normalised: no psql meta-commands, SET lines, comments or owners."""
    u = sa.make_url(url)
    out = subprocess.run(
        [
            "pg_dump",
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "-h",
            u.host,
            "-U",
            u.username,
            u.database,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    lines = [
        line
        for line in out.splitlines()
        if line.strip() and not re.match(r"^(--|\\(un)?restrict |SET |SELECT pg_catalog.set_config)", line)
    ]
    return "\n".join(lines)


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        with engine.connect() as conn:
            return {
                t: conn.exec_driver_sql(f'SELECT count(*) FROM "{t}"').scalar()
                if engine.dialect.name == "postgresql"
                else conn.exec_driver_sql(f"SELECT count(*) FROM `{t}`").scalar()
                for t in inspector.get_table_names()
            }
    finally:
        engine.dispose()


def test_pagila_restores_into_a_fresh_database_with_its_schema(
    pagila, pg_url, other_pg_url, backup_of, location, keyring, store
):
    source, _truth = pagila
    backup_id = backup_of(source)
    report = restore_and_verify(backup_id, location=location, keyring=keyring, store=store, into_url=pg_url)
    assert report.ok, report.problems
    assert _pg_schema(pg_url) == _pg_schema(source)
    counts = _counts(pg_url)
    assert counts == _counts(source)
    assert counts["payment"] == 16049  # stored once: in its partitions, not also as the parent
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            objects = dict(
                conn.exec_driver_sql(
                    "SELECT 'pk', count(*) FROM pg_constraint WHERE contype = 'p' UNION ALL "
                    "SELECT 'fk', count(*) FROM pg_constraint WHERE contype = 'f' UNION ALL "
                    "SELECT 'index', count(*) FROM pg_indexes WHERE schemaname = 'public' UNION ALL "
                    "SELECT 'view', count(*) FROM pg_views WHERE schemaname = 'public' UNION ALL "
                    "SELECT 'trigger', count(*) FROM pg_trigger WHERE NOT tgisinternal UNION ALL "
                    "SELECT 'enum', count(*) FROM pg_type WHERE typtype = 'e' UNION ALL "
                    "SELECT 'domain', count(*) FROM pg_type WHERE typtype = 'd' "
                    "AND typnamespace = 'public'::regnamespace"
                ).fetchall()
            )
            # sequences carry on where the source was
            nextval = conn.exec_driver_sql("SELECT nextval('public.customer_customer_id_seq')").scalar()
    finally:
        engine.dispose()
    assert all(objects[k] > 0 for k in ("pk", "fk", "index", "view", "trigger", "enum", "domain")), objects
    assert nextval > counts["customer"]

    # bad input: a target that already holds one of the tables is refused, nothing created
    engine = sa.create_engine(other_pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE public.film_actor (x int)")
    engine.dispose()
    before = _pg_schema(other_pg_url)
    with pytest.raises(BackupError, match="film_actor") as refused:
        restore_and_verify(backup_id, location=location, keyring=keyring, store=store, into_url=other_pg_url)
    assert "Nothing was restored" in str(refused.value)
    assert _pg_schema(other_pg_url) == before


def _show_create(url: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {
                n: re.sub(
                    r" AUTO_INCREMENT=\d+", "", conn.exec_driver_sql(f"SHOW CREATE TABLE `{n}`").fetchone()[1]
                )
                for n in names
            }
    finally:
        engine.dispose()


def test_mall_restores_into_a_fresh_mariadb_database_with_its_tables(
    mall, mariadb_url, backup_of, location, keyring, store
):
    source, _truth = mall
    backup_id = backup_of(source)
    report = restore_and_verify(
        backup_id, location=location, keyring=keyring, store=store, into_url=mariadb_url
    )
    assert report.ok, report.problems
    assert _show_create(mariadb_url) == _show_create(source)
    assert _counts(mariadb_url) == _counts(source)
