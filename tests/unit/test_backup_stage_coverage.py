"""The backup stage hands prepare_backup every table classification found personal data in, so a
table outside what the backup covers (another schema) refuses the backup instead of being skipped
silently (issue 18, item 9; the refusal itself: tests/integration/backup/test_hardening.py)."""

from __future__ import annotations

import contextlib
import logging
from types import SimpleNamespace

from dereg.backup import sources
from dereg.backup.writer import BackupRecord
from dereg.model import ClassificationResult, ColumnFinding


def test_the_backup_stage_passes_the_personal_tables(monkeypatch):
    seen: dict = {}

    def fake_prepare_backup(engine, **kwargs):
        seen.update(kwargs)
        return {"backup_id": "bk-1", "parts": [], "reused": True}

    record = BackupRecord("bk-1", "p/bk-1/manifest.json", {}, 0, "2030-01-01T00:00:00+00:00", False)
    monkeypatch.setattr(sources, "prepare_backup", fake_prepare_backup)
    monkeypatch.setattr(sources, "reuse_complete", lambda *args: record)
    classification = ClassificationResult(
        "db",
        [
            ColumnFinding("archive.orders", "buyer", ["person_name"], "general"),
            ColumnFinding("guardians", "mobile", ["cn_mobile"], "general"),
            ColumnFinding("guardians", "name", ["person_name"], "general"),
            ColumnFinding("rooms", "code", [], None),
        ],
    )
    manifest = SimpleNamespace(
        company_id="school-1",
        sources=[SimpleNamespace(id="db", conn_id="school_db")],
        object_sources=[],
        backup=SimpleNamespace(retention_days=1, object_lock=False, subject_keys=False),
    )
    artifacts = SimpleNamespace(
        run_id="run-1",
        store=None,
        classification=lambda source_id: classification,
        put_backups=lambda b: None,
    )
    connectors = SimpleNamespace(database=lambda conn_id: contextlib.nullcontext("engine"))
    sources.backup_sources(
        manifest,
        artifacts,
        connectors=connectors,
        location=SimpleNamespace(bucket="b"),
        keyring=None,
        log=logging.getLogger("test"),
        progress=None,
    )
    assert seen["personal_tables"] == ["archive.orders", "guardians"]
    # the manifest's switch turns per-subject keys off; the backup's manifest records why
    assert "backup.subject_keys: false" in seen["subjects"]
