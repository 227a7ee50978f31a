"""`destroy_retired` when some retired keys may go and another is still needed: the refusal names
the keys it did destroy, so that the operator does not read it as "nothing happened"."""

from __future__ import annotations

import datetime as dt

import pytest

from dereg import rotation
from dereg.errors import KeyringError
from dereg.evidence.ledger import Ledger
from dereg.evidence.store import open_store
from dereg.keys import Keyring


def test_a_refusal_names_the_keys_destroyed_in_the_same_call(tmp_path, monkeypatch):
    keyring = Keyring.create(tmp_path / "keyring.json")
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    first, _ = keyring.rotate(grace_days=0, now=now)
    second, _ = keyring.rotate(grace_days=0, now=now)
    monkeypatch.setattr(
        rotation, "kek_in_use", lambda store, location, kek: ["bk-1"] if kek == second else []
    )
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        with pytest.raises(KeyringError) as refused:
            rotation.destroy_retired(keyring, store, None, now=now + dt.timedelta(days=1))
        message = str(refused.value)
        assert f"destroyed: {first}" in message and f"{second} (still wraps the data key of bk-1)" in message
        assert set(Keyring.load(tmp_path / "keyring.json").retired) == {second}
        (entry,) = [e for e in Ledger(store).entries() if e.stage == "key_rotation"]
        assert entry.details["destroyed"] == [first]
    finally:
        store.dispose()
