"""Subject group blocks (format version 7) without servers: the wrapped group keys, a block sealed and
opened, the split of the sealed values by group, a subject dropped from its block, and a table's rows
merged back from several blocks, with a shredded subject marked."""

from __future__ import annotations

import hashlib
import io
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
        self.frames.setdefault((group, table), []).append((entries, frame))


def _section(spool: _Spool, group: int, table: str) -> bytes:
    return b"".join(f for _, f in spool.frames[(group, table)])


@pytest.mark.parametrize("step", [1, 7, 64, 10_000])
def test_one_copy_is_cut_into_stored_rows_group_sections_and_the_plain_hash(step, monkeypatch):
    monkeypatch.setattr(gk._GroupRouter, "FLUSH", 1)  # several frames per group
    # the link value rows_sql puts in front of each row, and the subject number it maps to
    subjects = [5, None, 0, 13, 1, 6, 5, None, 7, 0, 13]
    ordinal = {b"s%d" % n: n for n in range(14)}
    rows = [b"%d\tname %d\t\\N" % (line, line) for line in range(len(subjects))]
    lines = [(b"\\N" if n is None else b"s%d" % n) + b"\t" + rows[line] for line, n in enumerate(subjects)]
    entries = [b"%d\t%d\t" % (n, line) + rows[line] for line, n in enumerate(subjects) if n is not None]
    stream = b"".join(x + b"\n" for x in lines)
    spool, stored = _Spool(), io.BytesIO()
    router = gk._GroupRouter(spool, "notes", stored, ordinal, groups=4, group_size=4)
    for at in range(0, len(stream), step):
        router.write(stream[at : at + step])
    router.finish()
    assert (router.rows, router.subject_rows) == (11, 9)
    assert router.plain.hexdigest() == hashlib.sha256(b"".join(r + b"\n" for r in rows)).hexdigest()
    assert stored.getvalue() == rows[1] + b"\n" + rows[7] + b"\n"  # the rows of no subject, as they are
    assert sorted(g for g, _ in spool.frames) == [0, 1, 3]  # group 2 has no row
    for group in (0, 1, 3):
        section = _section(spool, group, "notes")
        mine = [x for x in entries if int(x.split(b"\t")[0]) // 4 == group]
        assert gk._decompress(section) == b"".join(x + b"\n" for x in mine)  # line order kept
        assert sum(n for n, _ in spool.frames[(group, "notes")]) == len(mine)
    assert len(spool.frames[(1, "notes")]) > 1 or step > len(stream) // 2  # one write: one frame
    assert [e[:2] for e in gk._entries(_section(spool, 0, "notes"))] == [(2, 0), (4, 1), (9, 0)]
    # the link read from the row's own field (the plain backup's COPY, hashed as it came): the same cut
    plain_copy = b"".join(r + b"\n" for r in rows)
    own = {b"%d" % line: n for line, n in enumerate(subjects) if n is not None}
    spool2, stored2 = _Spool(), io.BytesIO()
    router = gk._GroupRouter(spool2, "notes", stored2, own, groups=4, group_size=4, link=0)
    for at in range(0, len(plain_copy), step):
        router.write(plain_copy[at : at + step])
    router.finish()
    assert router.plain.hexdigest() == hashlib.sha256(plain_copy).hexdigest()
    assert stored2.getvalue() == stored.getvalue() and (router.rows, router.subject_rows) == (11, 9)
    assert {k: gk._decompress(_section(spool2, *k)) for k in spool2.frames} == {
        k: gk._decompress(_section(spool, *k)) for k in spool.frames
    }


def test_a_link_map_gives_each_value_its_lowest_subject_and_leaves_out_null_and_unknown_refs():
    ordinal = {b"10": 0, b"11": 1, b"12": 2}
    # mapping_sql's order: subject DESC, so the lowest subject comes last and wins
    pairs = b'7\t12\n8\t11\n7\t10\n\\N\t11\n9\t99\n(1,"a\\tb")\t12\n'
    for link_map in (gk.link_map, gk.link_map_reference):
        assert link_map(pairs, ordinal) == {b"7": 0, b"8": 1, b'(1,"a\\tb")': 2}
        assert link_map(b"", ordinal) == {}


def test_the_rows_are_read_as_a_plain_backup_reads_them_with_their_link_in_front():
    spec = SealSpec("students", None, "students", "id", {})
    hop = {
        "table": "students",
        "schema": None,
        "name": "students",
        "columns": ["student_id"],
        "ref_columns": ["id"],
    }
    columns = [{"name": n} for n in ("id", "student_id", "body")]
    # a table's own rows, as `COPY "notes" TO` reads them (not an inheritance child's)
    assert gk.rows_sql(spec, [hop], '"notes"', columns) == (
        'COPY (SELECT dereg_t."student_id"::text, dereg_t."id", dereg_t."student_id", dereg_t."body" '
        'FROM ONLY "notes" dereg_t) TO STDOUT'
    )
    # a view or foreign table is read whole, as the plain backup's query reads it
    assert 'FROM "notes" dereg_t' in gk.rows_sql(spec, [hop], '"notes"', columns, relkind="v")


def _frame(lines: list[bytes]) -> bytes:
    return zstandard.ZstdCompressor().compress(b"".join(lines))


def test_rows_merge_back_from_several_blocks_and_a_shredded_subject_is_marked():
    # subjects 0..2 in groups of 2; rows 0, 2, 3 belong to subjects 1, 2, 0; rows 1 and 4 to none
    plain = b"1\tAnn\t2016-01-01\n2\tkeep\t2017-01-01\n3\tBo\t\\N\n4\tCy\t2018-01-01\n5\tnone\t\\N\n"
    stored = b"2\tkeep\t2017-01-01\n5\tnone\t\\N\n"
    group0 = _frame([b"1\t0\t1\tAnn\t2016-01-01\n", b"0\t3\t4\tCy\t2018-01-01\n"])
    group1 = _frame([b"2\t2\t3\tBo\t\\N\n"])
    spec = {
        "columns": [{"name": n} for n in ("id", "name", "born")],
        "sealed": {"columns": ["name", "born"], "markers": {"name": "#shredded"}, "rows": 3},
        "rows": 5,
        "sealed_sha256": hashlib.sha256(stored).hexdigest(),
        "sha256": hashlib.sha256(plain).hexdigest(),
    }
    manifest = {"backup_id": "bk-7", "table_order": ["s"], "version": 7}
    key_set = gk.GroupKeySet(
        "bk-7", 2, 3, [gk.Group(0, 0, "b/0", b"k" * 32), gk.Group(1, 0, "b/1", b"k" * 32)]
    )
    problems: list[str] = []
    opened = gk.GroupUnsealer(manifest, key_set, [{"s": (2, group0)}, {"s": (1, group1)}])
    assert b"".join(opened.wrap("s", dict(spec), iter([stored[:9], stored[9:]]), problems)) == plain
    assert problems == [] and opened.shredded_rows == {}

    marks = gk.shredded_marks(spec)
    assert marks == {1: b"#shredded", 2: b"\\N"}
    new0, changed = gk.drop_subject(group0, 0, marks)
    assert changed == 1 and b"Cy" not in gk._decompress(new0)
    key_set.groups[0] = gk.Group(0, 1, "b/0/1", b"n" * 32, [0])
    entry = dict(spec)
    opened = gk.GroupUnsealer(manifest, key_set, [{"s": (2, new0)}, {"s": (1, group1)}])
    out = b"".join(opened.wrap("s", entry, iter([stored]), problems))
    assert out == b"1\tAnn\t2016-01-01\n2\tkeep\t2017-01-01\n3\tBo\t\\N\n4\t#shredded\t\\N\n5\tnone\t\\N\n"
    assert problems == [] and opened.shredded_rows == {"s": 1}
    assert entry["sha256"] == hashlib.sha256(out).hexdigest()

    # a stored stream changed, or a block whose lines do not fit it, is reported
    opened = gk.GroupUnsealer(manifest, key_set, [{"s": (2, group0)}, {"s": (1, group1)}])
    b"".join(opened.wrap("s", dict(spec), iter([stored + b"6\tx\t\\N\n"]), problems))
    assert any("sealed_sha256" in p for p in problems)
    problems.clear()
    opened = gk.GroupUnsealer(
        manifest, key_set, [{"s": (2, group0)}, {"s": (1, _frame([b"2\t9\t3\tBo\t\\N\n"]))}]
    )
    b"".join(opened.wrap("s", dict(spec), iter([stored]), problems))
    assert any("line numbers do not fit" in p for p in problems)
    # and so is a merge that gives another number of rows than the manifest's (a stored row lost:
    # its hash still checked against a stream cut short the same way)
    problems.clear()
    short = stored.split(b"\n", 1)[1]
    opened = gk.GroupUnsealer(manifest, key_set, [{"s": (2, group0)}, {"s": (1, group1)}])
    b"".join(
        opened.wrap(
            "s", {**spec, "sealed_sha256": hashlib.sha256(short).hexdigest()}, iter([short]), problems
        )
    )
    assert problems == ["s: 4 rows merged from the stored rows and the group blocks, the manifest says 5"]


def test_rewriting_a_group_keeps_the_other_subjects_and_needs_a_known_subject():
    from types import SimpleNamespace

    key_set = gk.GroupKeySet("bk-7", 2, 3, [gk.Group(0, 0, "p/bk-7/groups/0/0", os.urandom(32))])
    key_set.groups.append(gk.Group(1, 0, "p/bk-7/groups/1/0", os.urandom(32)))
    objects: dict[str, bytes] = {}
    frame = _frame([b"1\t0\t1\tAnn\n", b"0\t3\t4\tCy\n"])
    objects[key_set.groups[0].block] = gk.seal_block(
        key_set.groups[0].key, "bk-7", 0, 0, [("s", 2, frame)], []
    )
    location = SimpleNamespace(key=lambda *parts: "p/" + "/".join(parts))
    old_key = key_set.groups[0].key
    io_ = {
        "get": objects.__getitem__,
        "put": objects.__setitem__,
        "location": location,
        "marks": {"s": {1: b"\\N"}},
    }
    group, old = gk.rewrite_group(key_set, 0, **io_)
    assert old is not None and old.key == old_key and group.key != old_key and group.generation == 1
    _, frames = gk.open_block(group.key, objects[group.block], "bk-7", 0, 1)
    assert list(gk._entries(frames["s"][1], frozenset([0]))) == [
        (0, 1, b"1\tAnn", False),
        (3, 0, b"4\t\\N", True),
    ]
    assert gk.rewrite_group(key_set, 0, **io_)[1] is None
    with pytest.raises(BackupError, match="in no group"):
        gk.rewrite_group(key_set, 7, **io_)


def test_rows_merge_back_through_a_read_buffer_smaller_than_a_row(monkeypatch):
    # the restore reads each group's rows from a temporary file a few bytes at a time, so that memory
    # does not grow with the number of groups: rows cut across reads come back whole
    monkeypatch.setattr(gk.GroupUnsealer, "READ_BUFFER", 3)
    plain = b"1\tAnn\n2\tkeep\n3\tBo\n4\tCy\n"
    stored = b"2\tkeep\n"
    groups = [_frame([b"0\t0\t1\tAnn\n", b"1\t3\t4\tCy\n"]), _frame([b"2\t2\t3\tBo\n"])]
    spec = {
        "columns": [{"name": "id"}, {"name": "name"}],
        "sealed": {"columns": ["name"], "markers": {}, "rows": 3},
        "rows": 4,
        "sealed_sha256": hashlib.sha256(stored).hexdigest(),
        "sha256": hashlib.sha256(plain).hexdigest(),
    }
    manifest = {"backup_id": "bk-7", "table_order": ["s"], "version": 7}
    key_set = gk.GroupKeySet(
        "bk-7", 2, 3, [gk.Group(0, 0, "b/0", b"k" * 32), gk.Group(1, 0, "b/1", b"k" * 32)]
    )
    opened = gk.GroupUnsealer(manifest, key_set, [{"s": (2, groups[0])}, {"s": (1, groups[1])}])
    problems: list[str] = []
    assert b"".join(opened.wrap("s", dict(spec), iter([stored]), problems)) == plain
    assert problems == []

    cut = gk.GroupUnsealer(manifest, key_set, [{"s": (2, _frame([b"0\t0\t1\tAnn\n1\t3\t4"]))}])
    with pytest.raises(BackupError, match="whole row"):
        b"".join(cut.wrap("s", dict(spec), iter([stored]), problems))


def test_a_table_whose_rows_all_belong_to_subjects_comes_back_a_chunk_at_a_time(monkeypatch):
    # no stored row to wait for: the blocks' rows must still be passed on in bounded pieces, never
    # the whole table at once
    monkeypatch.setattr(gk, "CHUNK_BYTES", 8)
    rows = [f"{i}\tname{i}\n".encode() for i in range(6)]
    plain = b"".join(rows)
    group = _frame([f"{i}\t{i}\t".encode() + r for i, r in enumerate(rows)])
    spec = {
        "columns": [{"name": "id"}, {"name": "name"}],
        "sealed": {"columns": ["name"], "markers": {}, "rows": 6},
        "rows": 6,
        "sealed_sha256": hashlib.sha256(b"").hexdigest(),
        "sha256": hashlib.sha256(plain).hexdigest(),
    }
    manifest = {"backup_id": "bk-7", "table_order": ["s"], "version": 7}
    key_set = gk.GroupKeySet("bk-7", 8, 6, [gk.Group(0, 0, "b/0", b"k" * 32)])
    problems: list[str] = []
    pieces = list(
        gk.GroupUnsealer(manifest, key_set, [{"s": (6, group)}]).wrap("s", spec, iter([]), problems)
    )
    assert b"".join(pieces) == plain and problems == []
    assert len(pieces) >= 3 and max(len(p) for p in pieces) <= 2 * len(rows[0]) + 8


def test_the_cut_flushes_every_group_once_the_rows_held_pass_a_byte_cap(monkeypatch):
    # every group's buffer fills at the same pace in scan order: with many groups, a row count per
    # group alone would hold groups x FLUSH rows; past HELD_BYTES every group is flushed
    monkeypatch.setattr(gk._GroupRouter, "FLUSH", 10_000)
    monkeypatch.setattr(gk._GroupRouter, "HELD_BYTES", 200)
    rows = [b"%d\t%s" % (line, b"x" * 40) for line in range(40)]
    ordinal = {b"%d" % line: line % 8 for line in range(40)}  # 8 subjects, groups of 2
    stream = b"".join(r + b"\n" for r in rows)
    spool, stored = _Spool(), io.BytesIO()
    router = gk._GroupRouter(spool, "t", stored, ordinal, groups=4, group_size=2, link=0)
    for at in range(0, len(stream), 100):
        router.write(stream[at : at + 100])
        assert router.held <= 200 + 100  # never more than the cap and one write
        assert sum(len(got) for got in router.buffers) <= 200 + 100
    router.finish()
    assert all(len(spool.frames[(g, "t")]) > 1 for g in range(4))  # flushed before the end
    for g in range(4):
        want = [b"%d\t%d\t" % (line % 8, line) + r for line, r in enumerate(rows) if line % 8 // 2 == g]
        assert gk._decompress(_section(spool, g, "t")) == b"".join(x + b"\n" for x in want)


def test_a_block_past_the_gcm_limit_is_refused_naming_its_largest_table(monkeypatch):
    monkeypatch.setattr(gk, "BLOCK_LIMIT", 1000)
    sections = [("notes", 1, b"n" * 300), ("photos", 1, b"p" * 800)]
    with pytest.raises(BackupError, match="group 3 holds .* with table photos, more than one AES-256-GCM"):
        gk.seal_block(os.urandom(32), "bk-7", 3, 0, sections, [])
    blob = gk.seal_block(os.urandom(32), "bk-7", 3, 0, sections[1:], [])  # 800 bytes: sealed
    assert len(blob) > 800


def test_the_spool_names_the_table_holding_most_of_a_group_whatever_table_was_read_last():
    # tables are read in parallel: the one whose read ends when the group passes the limit may hold
    # little of it
    sealer = gk.GroupSealer(SealSpec("students", None, "students", "id", {}), "bk-7")
    sealer.spool_frame(0, "payments", 1, b"p" * 100)
    sealer.spool_frame(0, "students", 1, b"s" * 600)
    sealer.spool_frame(0, "students", 1, b"s" * 600, more=True)
    sealer.spool_frame(0, "payments", 1, b"p" * 900, more=True)
    sealer.spool_frame(1, "notes", 1, b"n" * 5000)
    assert sealer._largest_table(0) == "students"  # 1,200 bytes against payments' 1,000
    assert sealer._largest_table(1) == "notes"
