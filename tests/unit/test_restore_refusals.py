"""A restore of a backup the catalog marks destroyed says so, before it touches the store (it used
to fail on the missing manifest with the store's NoSuchKey, as if --from were wrong)."""

from __future__ import annotations

import pytest

from dereg.backup import catalog
from dereg.backup.restore import restore_and_verify
from dereg.connections import S3Location
from dereg.errors import BackupError
from dereg.evidence.store import open_store


@pytest.mark.parametrize("status", ["destroyed", "shredded"])
def test_a_destroyed_backup_is_refused_with_its_status(tmp_path, status):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        catalog.start(
            store,
            backup_id="bk-1",
            company_id="school",
            run_id="run-1",
            source_id="db",
            bucket="offsite",
            prefix="closures",
            manifest_key="closures/bk-1/manifest.json",
            object_lock=True,
            kek_id="kek-1",
            wrapped_key="",
        )
        catalog.set_status(store, "bk-1", status)
        # an endpoint nobody listens on: the refusal must come before any request
        location = S3Location("http://127.0.0.1:9", "k", "s", "cn-north-1", "offsite", "closures")
        with pytest.raises(BackupError, match=f"catalog marks it {status}"):
            restore_and_verify("bk-1", location=location, keyring=None, store=store)
    finally:
        store.dispose()
