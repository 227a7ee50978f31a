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
