"""The final certificate states that no readable copy of the customers' data remains: it is never
signed while a backup of the company still has a live data key, be it a complete backup or a failed
attempt whose key was never destroyed (its chunks, if any were written, decrypt)."""

from __future__ import annotations

import pytest

from dereg.backup import catalog
from dereg.errors import BackupError
from dereg.evidence.store import open_store
from dereg.keys import Keyring
from dereg.sweep import companies_done, final_certificate


def _backup(store, backup_id: str, company_id: str = "school") -> None:
    catalog.start(
        store,
        backup_id=backup_id,
        company_id=company_id,
        run_id="run-1",
        source_id="db",
        bucket="offsite",
        prefix="closures",
        manifest_key=f"closures/{backup_id}/manifest.json",
        object_lock=True,
        kek_id="kek-1",
        wrapped_key="d3JhcHBlZA==",
    )


def test_a_failed_backup_with_a_live_key_blocks_the_final_certificate(tmp_path, monkeypatch):
    monkeypatch.setenv("DEREG_OUTPUT_DIR", str(tmp_path / "out"))
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        _backup(store, "bk-shredded")
        catalog.set_status(store, "bk-shredded", "destroyed")
        with store.begin() as conn:
            conn.execute(
                catalog.backup_keys.update()
                .where(catalog.backup_keys.c.backup_id == "bk-shredded")
                .values(wrapped_key="", destroyed_at="2030-01-01T00:00:00+00:00")
            )
        _backup(store, "bk-failed")
        catalog.fail(store, "bk-failed", "the store refused a chunk")
        swept = [{"backup_id": "bk-shredded", "company_id": "school", "ok": True}]
        assert companies_done(store, swept) == []
        with pytest.raises(BackupError) as refused:
            final_certificate(store, Keyring.create(tmp_path / "k.json"), "school", sweep_run_id="sweep-1")
        assert "bk-failed (failed) still has a live data key" in str(refused.value)
        assert "the sweep destroys the key of a failed attempt" in str(refused.value)
        assert not (tmp_path / "out").exists()
    finally:
        store.dispose()
