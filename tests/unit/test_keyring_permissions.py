"""A keyring file other users can read opens every backup: loading it warns, saying how to fix it."""

from __future__ import annotations

import os
import warnings

import pytest

from dereg.keys import Keyring

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def test_a_keyring_readable_by_others_loads_with_a_warning_naming_the_fix(tmp_path):
    path = tmp_path / "keyring.json"
    Keyring.create(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mode 0600, as written: no warning
        Keyring.load(path)
    os.chmod(path, 0o644)
    with pytest.warns(UserWarning, match=f"readable or writable by other users .*chmod 600 {path}"):
        ring = Keyring.load(path)
    assert ring.active_kek in ring.keks  # still loads: the warning does not lock anyone out


def test_a_rotation_syncs_the_new_keyring_to_disk_before_and_after_the_rename(tmp_path, monkeypatch):
    """The keyring file is the only copy of the key-encryption keys: a crash just after a rotation
    must find the old file or the new one whole, never an empty one (rename before the data is on disk)."""
    import datetime as dt

    path = tmp_path / "keyring.json"
    ring = Keyring.create(path)
    synced, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    def replace(src, dst):
        synced.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    ring.rotate(grace_days=30, now=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert synced == ["file", "rename", "dir"]
    assert Keyring.load(path).active_kek == ring.active_kek
