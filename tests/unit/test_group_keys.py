"""Subject group blocks (format version 7) without servers: the wrapped group keys, a block sealed and
opened, the split of the sealed values by group, a subject dropped from its block, and a table's rows
merged back from several blocks, with a shredded subject marked."""

from __future__ import annotations

import hashlib
import os

import pytest
import zstandard

from dereg.backup import groupkeys as gk
from dereg.backup.subjectkeys import SealSpec
from dereg.errors import BackupError


def _key_set() -> gk.GroupKeySet:
    return gk.GroupKeySet(
        "bk-7", 2, 3, [gk.Group(0, 0, "b/0", os.urandom(32)), gk.Group(1, 3, "b/1", os.urandom(32), [2])]
    )


def test_group_keys_are_wrapped_per_group_and_generation():
    data_key = os.urandom(32)
    key_set = _key_set()
    body = key_set.to_json(data_key)
    assert body["shredded"] == 1 and not any(g.key.hex() in str(body) for g in key_set.groups)
    back = gk.GroupKeySet.from_json(body, data_key)
    assert [(g.group, g.generation, g.key, g.shredded) for g in back.groups] == [
        (g.group, g.generation, g.key, g.shredded) for g in key_set.groups
    ]
    with pytest.raises(BackupError, match="do not unwrap"):
        gk.GroupKeySet.from_json(body, os.urandom(32))
    # a wrapped key moved to another generation (an old key put back) does not unwrap
    moved = {**body, "groups": [body["groups"][0], {**body["groups"][1], "generation": 2}]}
    with pytest.raises(BackupError, match="do not unwrap"):
        gk.GroupKeySet.from_json(moved, data_key)


def test_a_block_opens_only_as_its_own_group_and_generation():
    key = os.urandom(32)
    frame = zstandard.ZstdCompressor().compress(b"000000\t0\t5\tAnn\n")
    blob = gk.seal_block(key, "bk-7", 0, 1, [("students", 1, frame), ("notes", 0, b"")], [1])
    header, frames = gk.open_block(key, blob, "bk-7", 0, 1)
    assert header["shredded"] == [1] and frames == {"students": (1, frame), "notes": (0, b"")}
    for wrong in (
        (os.urandom(32), "bk-7", 0, 1),
        (key, "bk-7", 0, 0),
        (key, "bk-7", 1, 1),
        (key, "bk-8", 0, 1),
    ):
        with pytest.raises(BackupError, match="fails authentication"):
            gk.open_block(wrong[0], blob, *wrong[1:])


class _Spool:
    def __init__(self):
        self.frames: dict = {}

    def spool_frame(self, group, table, entries, frame, *, more=False):
        assert (group, table) not in self.frames
        self.frames[(group, table)] = (entries, zstandard.ZstdDecompressor().decompress(frame))


@pytest.mark.parametrize("step", [1, 7, 64, 10_000])
def test_the_sealed_values_are_cut_by_group_wherever_the_copy_blocks_end(step):
    lines = [
        b"%06d\t%d\t%d\tv%d\\tx\n" % (n // 4, n, line, line) for line, n in enumerate([0, 1, 5, 6, 7, 13, 13])
    ]
    lines.sort()
    stream = b"".join(lines)
    spool = _Spool()
    splitter = gk._GroupSplitter(spool, "notes")
    for at in range(0, len(stream), step):
        splitter.write(stream[at : at + step])
    assert splitter.finish() == 7
    assert sorted(spool.frames) == [(0, "notes"), (1, "notes"), (3, "notes")]  # group 2 has no row
    for (group, _), (entries, data) in spool.frames.items():
        mine = [x for x in lines if int(x[:6]) == group]
        assert data == b"".join(mine) and entries == len(mine)


def test_the_sealed_values_in_scan_order_are_routed_to_their_groups_in_line_order(monkeypatch):
    monkeypatch.setattr(gk._GroupRouter, "FLUSH", 20)  # several frames per group
    lines = [
        b"%06d\t%d\t%d\tv%d\n" % (n // 4, n, line, line)
        for line, n in enumerate([5, 0, 13, 1, 6, 5, 7, 0, 13])
    ]
    stream = b"".join(lines)
    spool = _MultiSpool()
    router = gk._GroupRouter(spool, "notes")
    for at in range(0, len(stream), 5):
        router.write(stream[at : at + 5])
    assert router.finish() == 9
    for group in (0, 1, 3):
        frames = spool.frames[(group, "notes")]
        joined = gk._decompress(b"".join(f for _, f in frames))
        assert joined == b"".join(x for x in lines if int(x[:6]) == group)  # line order kept
        assert sum(n for n, _ in frames) == joined.count(b"\n")
        assert [e[0] for e in gk._entries(b"".join(f for _, f in frames))] == sorted(
            int(x.split(b"\t")[2]) for x in lines if int(x[:6]) == group
        )
    assert len(spool.frames[(1, "notes")]) > 1


class _MultiSpool:
    def __init__(self):
        self.frames: dict = {}

    def spool_frame(self, group, table, entries, frame, *, more=False):
        self.frames.setdefault((group, table), []).append((entries, frame))


def test_a_stream_out_of_group_order_is_refused():
    splitter = gk._GroupSplitter(_Spool(), "notes")
    with pytest.raises(BackupError, match="not ordered"):
        splitter.write(b"000002\t9\t0\ta\n000001\t5\t1\tb\n")


def test_sql_keeps_the_scan_and_maps_links_to_subject_numbers():
    spec = SealSpec("students", None, "students", "id", {})
    hop = {
        "table": "students",
        "schema": None,
        "name": "students",
        "columns": ["student_id"],
        "ref_columns": ["id"],
    }
    pairs, links = gk.map_sql(spec, [hop])
    assert links == ["student_id"] and 'row_number() OVER (ORDER BY "id")' in pairs
    columns = [{"name": n} for n in ("id", "student_id", "body")]
    nulled = gk.nulled_sql(spec, [hop], '"notes"', columns, ["body"])
    assert "ORDER BY" not in nulled.split("FROM (SELECT dereg_k")[0]  # the table's own scan order
    assert 'CASE WHEN dereg_x.dereg_s THEN NULL ELSE dereg_x."body" END' in nulled
    values = gk.values_sql(spec, [hop], '"notes"', ["body"], 1024)
    assert (
        values.endswith("ORDER BY dereg_m.dereg_n / 1024, dereg_x.dereg_line) TO STDOUT")
        and "row_number() OVER () - 1 AS dereg_line" in values
    )
    own = gk.nulled_sql(spec, [], '"students"', [{"name": "id"}, {"name": "name"}], ["name"])
    # the subject table: every row is a subject's
    assert own == 'COPY (SELECT dereg_t."id", NULL FROM "students" dereg_t) TO STDOUT'
    scan = gk.scan_values_sql(spec, [hop], '"notes"', ["body"], 1024, "integer")
    # sorted: the subject ranks and the two arrays, never the table's rows
    assert "ORDER BY dereg_m" in scan and "width_bucket(" in scan and scan.count("ORDER BY") == 3
    typed = [{"name": "student_id", "pg_type": "integer", "pg_builtin": True}]
    assert gk.searchable_link(spec, [hop], typed) == "integer"
    assert gk.searchable_link(spec, [hop], [{"name": "student_id", "pg_type": "text"}]) is None
    back = {**hop, "columns": ["id"], "ref_columns": ["guardian_id"], "direction": "referenced"}
    pairs, links = gk.map_sql(spec, [back])
    assert links == ["id"] and "min(dereg_o.dereg_n)" in pairs and 'GROUP BY dereg_h0."guardian_id"' in pairs


def _frame(lines: list[bytes]) -> bytes:
    return zstandard.ZstdCompressor().compress(b"".join(lines))


def test_rows_merge_back_from_several_blocks_and_a_shredded_subject_is_marked():
    # subjects 0..2 in groups of 2; rows 0, 2, 3 belong to subjects 1, 2, 0; row 1 to none
    plain = b"1\tAnn\t2016-01-01\n2\tkeep\t2017-01-01\n3\tBo\t\\N\n4\tCy\t2018-01-01\n"
    stored = b"1\t\\N\t\\N\n2\tkeep\t2017-01-01\n3\t\\N\t\\N\n4\t\\N\t\\N\n"
    group0 = _frame([b"000000\t1\t0\tAnn\t2016-01-01\n", b"000000\t0\t3\tCy\t2018-01-01\n"])
    group1 = _frame([b"000001\t2\t2\tBo\t\\N\n"])
    spec = {
        "columns": [{"name": n} for n in ("id", "name", "born")],
        "sealed": {"columns": ["name", "born"], "markers": {"name": "#shredded"}, "rows": 3},
        "sealed_sha256": hashlib.sha256(stored).hexdigest(),
        "sha256": hashlib.sha256(plain).hexdigest(),
    }
    manifest = {"backup_id": "bk-7", "table_order": ["s"], "version": 7}
    frames = [{"s": (2, group0)}, {"s": (1, group1)}]
    problems: list[str] = []
    opened = gk.GroupUnsealer(manifest, _key_set(), frames)
    assert b"".join(opened.wrap("s", dict(spec), iter([stored[:9], stored[9:]]), problems)) == plain
    assert problems == [] and opened.shredded_rows == {}

    new0, changed = gk.drop_subject(group0, 0)
    assert changed == 1 and b"Cy" not in zstandard.ZstdDecompressor().decompress(new0)
    entry = dict(spec)
    opened = gk.GroupUnsealer(manifest, _key_set(), [{"s": (2, new0)}, {"s": (1, group1)}])
    out = b"".join(opened.wrap("s", entry, iter([stored]), problems))
    assert out == b"1\tAnn\t2016-01-01\n2\tkeep\t2017-01-01\n3\tBo\t\\N\n4\t#shredded\t\\N\n"
    assert problems == [] and opened.shredded_rows == {"s": 1}
    assert entry["sha256"] == hashlib.sha256(out).hexdigest()

    # a stored row whose sealed fields are not NULL, or a stream changed, is reported
    opened = gk.GroupUnsealer(manifest, _key_set(), frames)
    b"".join(opened.wrap("s", dict(spec), iter([stored.replace(b"3\t\\N", b"3\tEve")]), problems))
    assert any("do not fit" in p for p in problems) and any("sealed_sha256" in p for p in problems)


def test_rewriting_a_group_keeps_the_other_subjects_and_needs_a_known_subject():
    from types import SimpleNamespace

    key_set = gk.GroupKeySet("bk-7", 2, 3, [gk.Group(0, 0, "p/bk-7/groups/0/0", os.urandom(32))])
    key_set.groups.append(gk.Group(1, 0, "p/bk-7/groups/1/0", os.urandom(32)))
    objects: dict[str, bytes] = {}
    frame = _frame([b"000000\t1\t0\tAnn\n", b"000000\t0\t3\tCy\n"])
    objects[key_set.groups[0].block] = gk.seal_block(
        key_set.groups[0].key, "bk-7", 0, 0, [("s", 2, frame)], []
    )
    location = SimpleNamespace(key=lambda *parts: "p/" + "/".join(parts))
    old_key = key_set.groups[0].key
    group, old = gk.rewrite_group(
        key_set, 0, get=objects.__getitem__, put=objects.__setitem__, location=location
    )
    assert old is not None and old.key == old_key and group.key != old_key and group.generation == 1
    _, frames = gk.open_block(group.key, objects[group.block], "bk-7", 0, 1)
    assert list(gk._entries(frames["s"][1])) == [(0, 1, b"Ann"), (3, 0, None)]
    assert (
        gk.rewrite_group(key_set, 0, get=objects.__getitem__, put=objects.__setitem__, location=location)[1]
        is None
    )
    with pytest.raises(BackupError, match="in no group"):
        gk.rewrite_group(key_set, 7, get=objects.__getitem__, put=objects.__setitem__, location=location)
