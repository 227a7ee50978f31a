"""How a backup is split into parts for the mapped backup_part task (dereg.backup.parts)."""

from __future__ import annotations

from dereg.backup.parts import plan_parts


def test_a_large_table_is_a_part_of_its_own_and_small_ones_are_grouped_in_backup_order():
    tables = ["a", "big", "b", "c", "d", "huge"]
    rows = {"a": 40, "big": 100, "b": 30, "c": 50, "d": 10, "huge": 5000}
    # largest first, so the workers start on them
    assert plan_parts(tables, rows, 100) == [["huge"], ["big"], ["a", "b"], ["c", "d"]]


def test_no_split_keeps_every_table_in_one_part_and_unknown_sizes_count_as_small():
    assert plan_parts(["a", "b"], {"a": 10**9}, 0) == [["a", "b"]]
    assert plan_parts(["a", "b", "c"], {}, 1) == [["a", "b", "c"]]
    assert plan_parts([], {}, 100) == [[]]  # an empty source: one empty part, so the backup completes
    assert plan_parts(["a", "b"], {"a": 1, "b": 1}, 1) == [["a"], ["b"]]


def test_restore_verify_passes_only_when_every_backup_of_the_run_was_restored_and_verified():
    from types import SimpleNamespace

    import pytest

    from dereg.backup.sources import collect_restores, restore_units
    from dereg.errors import RestoreMismatch

    backups = {"db": {"backup_id": "bk-2"}, "uploads": {"backup_id": "bk-3"}}
    outcomes: dict = {"db": {"backup_id": "bk-2", "ok": True, "tables": 3}}
    artifacts = SimpleNamespace(backups=lambda: backups, restore=outcomes.get)
    manifest = SimpleNamespace(company_id="school-1")
    assert [u["label"] for u in restore_units(backups)] == ["db bk-2", "uploads bk-3"]
    with pytest.raises(RestoreMismatch, match=r"uploads \(bk-3\)"):
        collect_restores(manifest, artifacts)  # never restored
    outcomes["uploads"] = {"backup_id": "bk-1", "ok": True}  # an earlier backup's outcome
    with pytest.raises(RestoreMismatch, match=r"uploads \(bk-3\)"):
        collect_restores(manifest, artifacts)
    outcomes["uploads"] = {"backup_id": "bk-3", "ok": False}  # restored, but it differed
    with pytest.raises(RestoreMismatch, match=r"uploads \(bk-3\)"):
        collect_restores(manifest, artifacts)
    outcomes["uploads"] = {"backup_id": "bk-3", "ok": True}
    assert set(collect_restores(manifest, artifacts)["restores"]) == {"db", "uploads"}


def test_a_backup_taken_in_parts_is_restored_in_the_same_parts_and_the_others_whole():
    from dereg.backup.sources import restore_units

    backups = {
        "db": {"backup_id": "bk-2", "parts": 2},
        "one": {"backup_id": "bk-4"},
        "uploads": {"backup_id": "bk-3", "kind": "objects"},
    }
    units = restore_units(backups, {"db": [["payments"], ["guardians", "students"]], "one": [["t"]]})
    assert [u["label"] for u in units] == ["db bk-2 part 1/2", "db bk-2 part 2/2", "one bk-4", "uploads bk-3"]
    assert units[1] == {
        "source": "db",
        "backup_id": "bk-2",
        "part": 1,
        "parts": 2,
        "tables": ["guardians", "students"],
        "label": "db bk-2 part 2/2",
    }
    assert "part" not in units[2] and "part" not in units[3]
