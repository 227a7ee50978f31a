"""Algorithm agility: a manifest names its chunks' cipher and compression, and a release refuses, by
name and before reading anything, the ones it cannot open (a later algorithm is a new version)."""

from __future__ import annotations

import pytest

from dereg.backup import codec
from dereg.backup.restore import check_manifest_shape
from dereg.errors import BackupError

SHAPE = {"table_order": [], "tables": {}}


def test_the_algorithms_written_today_and_a_version_1_manifest_without_them_are_read():
    assert codec.unsupported_algorithms({"cipher": "AES-256-GCM", "compression": "zstd"}) == []
    assert codec.unsupported_algorithms({}) == []
    check_manifest_shape({**SHAPE, "cipher": "AES-256-GCM", "compression": "zstd"}, manifest_key="m")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"cipher": "ChaCha20-Poly1305"}, "cipher 'ChaCha20-Poly1305'"),
        ({"compression": "lz4"}, "compression 'lz4'"),
    ],
)
def test_an_algorithm_this_release_cannot_open_is_refused_by_name(fields, named):
    with pytest.raises(BackupError) as refused:
        check_manifest_shape({**SHAPE, **fields}, manifest_key="bk-x/manifest.json")
    message = str(refused.value)
    assert named in message and "bk-x/manifest.json" in message and "nothing was restored" in message
