"""Compliance-store migrations (dereg.evidence.migrations): a store made by release 0.1.0's
`create_all` is adopted and keeps its rows, a new revision's column arrives, concurrent openers
take turns, and the revisions agree with the tables the modules declare. SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from dereg.evidence import store as store_module
from dereg.evidence.ledger import Ledger
from dereg.evidence.migrations import HEAD, VERSION_TABLE, baseline, head_revisions, upgrade_store
from dereg.evidence.store import declared_metadata

ADD_NOTE = '''"""Add backups.note (a throwaway revision of the migration tests).

Revision ID: 9002
Revises: {head}
"""

import sqlalchemy as sa
from alembic import op

revision = "9002"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("backups", sa.Column("note", sa.String(100), nullable=True))
    op.execute("UPDATE backups SET note = 'before 9002'")


def downgrade() -> None:
    with op.batch_alter_table("backups") as batch:
        batch.drop_column("note")
'''


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


def _engine(url: str) -> sa.Engine:
    return store_module._make_engine(url)  # the store's own engine (BEGIN IMMEDIATE on SQLite)


def _version(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT version_num FROM dereg_alembic_version").scalars())


def _release_0_1_0_store(url: str) -> sa.Engine:
    """A store as release 0.1.0 left it: its tables by create_all, no dereg_alembic_version, some rows."""
    engine = _engine(url)
    baseline.metadata().create_all(engine)
    ledger = Ledger(engine)
    for i in range(3):
        ledger.append(
            company_id="c1", run_id="r1", stage=f"s{i}", event="succeeded", actor="ops", details={"i": i}
        )
    with engine.begin() as conn:
        conn.execute(
            baseline.metadata().tables["backups"].insert(),
            {
                "backup_id": "b1",
                "company_id": "c1",
                "run_id": "r1",
                "source_id": "s",
                "bucket": "bk",
                "prefix": "p",
                "manifest_key": "p/b1/manifest.json",
                "status": "complete",
                "tables_json": "{}",
                "total_rows": 7,
                "object_lock": True,
                "created_at": "2026-01-01T00:00:00+00:00",
            },
        )
    assert not sa.inspect(engine).has_table("dereg_alembic_version")
    return engine


def test_head_is_alembics_head():
    assert head_revisions() == {HEAD}


def test_a_store_of_release_0_1_0_is_adopted_with_its_rows_and_a_new_revision_arrives(url, tmp_path):
    engine = _release_0_1_0_store(url)
    entries = Ledger(engine).entries()
    try:
        upgrade_store(engine)
        assert _version(engine) == [HEAD]
        ledger = Ledger(engine)
        assert ledger.entries() == entries and ledger.verify().ok
        ledger.append(company_id="c1", run_id="r1", stage="s3", event="succeeded", actor="ops")
        assert ledger.verify().ok and ledger.head().seq == 4

        versions = tmp_path / "more_versions"
        versions.mkdir()
        (versions / "9002_add_backups_note.py").write_text(ADD_NOTE.format(head=HEAD))
        upgrade_store(engine, version_dirs=[versions])
        assert _version(engine) == ["9002"]
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT backup_id, total_rows, note FROM backups").one()
        assert tuple(row) == ("b1", 7, "before 9002")
        assert Ledger(engine).verify().ok
        upgrade_store(engine, version_dirs=[versions])  # at head: nothing to do
        assert _version(engine) == ["9002"]
    finally:
        engine.dispose()


def test_a_new_store_matches_the_tables_the_modules_declare(url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = _engine(url)
    try:
        upgrade_store(engine)
        assert _version(engine) == [HEAD]
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), declared_metadata()
            )
        assert diff == [], (
            "the store's tables differ from the revisions; add a revision: "
            'python -m dereg.evidence.migrations revision "what changes"'
        )
    finally:
        engine.dispose()


def test_concurrent_openers_take_turns(url):
    """Celery workers opening one new store at once: every one succeeds, the store is migrated once."""
    engines = [_engine(url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def open_one(engine: sa.Engine) -> None:
        start.wait()
        try:
            upgrade_store(engine)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert _version(engines[0]) == [HEAD]
    finally:
        for e in engines:
            e.dispose()


def test_open_store_migrates_and_the_cli_starts_without_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli-store.db'}"
    code = (
        "import sys; from dereg.cli import build_parser; build_parser();"
        "assert 'alembic' not in sys.modules, 'the CLI imports alembic at start-up';"
        f"from dereg.evidence.store import open_store; open_store({url!r});"
        "print('alembic' in sys.modules)"
    )
    run = [sys.executable, "-c", code]
    first = subprocess.run(run, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    assert first.stdout.strip() == "True"  # a new store: migrated with alembic
    again = subprocess.run(run, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    assert again.stdout.strip() == "False"  # at HEAD: one query, no alembic
    assert _version(sa.create_engine(url)) == [HEAD]
