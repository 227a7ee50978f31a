"""Format 7's row cut in C (`_dereg_cut.cut`) against its Python specification
(`groupkeys.cut_reference`): the same groups, counts, stored text and plain text, byte for byte, on
random COPY text; and the router fed through either gives the same frames, stored stream and hash."""

from __future__ import annotations

import array
import hashlib
import io
import random

import pytest
import zstandard

import _dereg_cut
from dereg.backup import groupkeys as gk

#: pieces a random COPY field is made of: COPY's escapes (a tab, newline or backslash in a value is
#: `\t`, `\n`, `\\`), multi-byte UTF-8, digits; never a raw tab or newline
PIECES = [b"a", b"Zo\xc3\xab", b"\\t", b"\\n", b"\\\\", b"\\N", b"7", b"42", b" ", b"\xe5\x90\x8d", b"-"]


def _field(rng: random.Random) -> bytes:
    return b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 6)))


def _table(
    rng: random.Random, *, front: bool, link: int, ncols: int, rows: int, refs: list[bytes], ordered=False
):
    """COPY text of `rows` lines: the link (a ref, `\\N`, or a value that is no subject) in front or
    at field `link`, now and then a huge field; `ordered`: the refs mostly in subject order, a row
    or a few per subject (what the C cut's guesses are for)."""
    out = []
    at = 0
    for _ in range(rows):
        pick = rng.random()
        if ordered and pick < 0.9:
            at = min(at + rng.choice([0, 0, 1, 1, 1, 2]), len(refs) - 1)
            out.append(b"\t".join([refs[at]] * (ncols + front)) + b"\n")
            continue
        ref = rng.choice(refs) if pick < 0.7 else (b"\\N" if pick < 0.8 else _field(rng) + b"?")
        fields = [_field(rng) for _ in range(ncols)]
        if rng.random() < 0.02:
            fields[rng.randrange(ncols)] = b"x\\t" * rng.randrange(10_000, 40_000)
        if front:
            fields.insert(0, ref)
        else:
            fields[link] = ref
        out.append(b"\t".join(fields) + b"\n")
    return b"".join(out)


def _setup(rng: random.Random):
    subjects = rng.randrange(1, 300)
    refs = sorted({b"%d" % rng.randrange(10**12) for _ in range(subjects)}) + [b"", b"\\\\x"]
    ordinal = dict(zip(refs, range(len(refs)), strict=True))
    group_size = rng.choice([1, 2, 7, 64, 4096])
    return refs, ordinal, group_size, -(-len(refs) // group_size)


def _run(fn, block, link, ordinal, group_size, first, groups, keys=None):
    buffers = [bytearray() for _ in range(groups)]
    counts = array.array("q", bytes(8 * groups))
    got = fn(block, link, ordinal, group_size, first, buffers, counts, keys)
    return got, [bytes(b) for b in buffers], list(counts)


@pytest.mark.parametrize("seed", range(60))
def test_the_c_cut_is_the_reference_cut_byte_for_byte(seed):
    rng = random.Random(seed)
    refs, ordinal, group_size, groups = _setup(rng)
    front = seed % 2 == 0
    ncols = rng.randrange(1, 6)
    link = None if front else rng.randrange(ncols)
    ordered = seed % 3 == 0
    text = _table(
        rng, front=front, link=link or 0, ncols=ncols, rows=rng.randrange(0, 400), refs=refs, ordered=ordered
    )
    # a block ends anywhere: the rest (a part of a line) is not consumed
    block = text[: rng.randrange(len(text) + 1)] if rng.random() < 0.5 else text
    first = rng.randrange(10**9)
    reference = _run(gk.cut_reference, block, link, ordinal, group_size, first, groups)
    # with or without the refs in subject order (the guesses), the same bytes
    assert _run(_dereg_cut.cut, block, link, ordinal, group_size, first, groups) == reference
    native = _run(_dereg_cut.cut, block, link, ordinal, group_size, first, groups, refs)
    assert native == reference
    (end, rows, stored_rows, stored, plain), _, _ = native
    assert end == block.rfind(b"\n") + 1
    assert rows == block[:end].count(b"\n")
    assert stored_rows == stored.count(b"\n")
    assert (plain is None) == (link is not None)


@pytest.mark.parametrize("seed", range(30))
def test_the_c_link_map_is_the_reference_link_map(seed):
    rng = random.Random(seed)
    refs, ordinal, _, _ = _setup(rng)
    lines = []
    for _ in range(rng.randrange(0, 500)):  # values seen again, `\N`, refs that are no subject
        value = rng.choice([b"\\N", b"%d" % rng.randrange(50), _field(rng) + b"v"])
        ref = rng.choice(refs) if rng.random() < 0.8 else b"%d?" % rng.randrange(9)
        lines.append((value, ref))
    if seed % 2:  # mapping_sql's order: subject descending, a few lines per subject
        lines.sort(key=lambda pair: -ordinal.get(pair[1], -1))
    pairs = b"".join(value + b"\t" + ref + b"\n" for value, ref in lines)
    reference = gk.link_map_reference(pairs, ordinal)
    assert _dereg_cut.link_map(pairs, ordinal) == reference
    assert _dereg_cut.link_map(pairs, ordinal, refs) == reference


def test_the_c_link_map_refuses_a_line_of_other_than_two_fields_without_quoting_it():
    for pairs in (b"Secret\n", b"Secret\t1\t2\n", b"Secret\t1"):
        with pytest.raises(ValueError) as caught:
            _dereg_cut.link_map(pairs, {b"1": 0})
        assert "Secret" not in str(caught.value)
    with pytest.raises(ValueError, match="line 1 maps to a negative subject number") as caught:
        _dereg_cut.link_map(b"Secret\t1\nSecret\t2\n", {b"1": 0, b"2": -4})
    assert "Secret" not in str(caught.value)
    with pytest.raises(TypeError):
        _dereg_cut.link_map(b"Secret\t1\n", {b"1": "0"})


def test_the_c_cut_appends_to_what_the_groups_hold_and_takes_any_buffer():
    ordinal = {b"a": 0, b"b": 3}
    buffers = [bytearray(b"kept\n"), bytearray()]
    counts = array.array("q", [1, 0])
    block = bytearray(b"b\tx\ny\t\\N\na\t\n\tz\nb")
    got = _dereg_cut.cut(memoryview(block), None, ordinal, 2, 5, buffers, counts)
    assert got == (len(block) - 1, 4, 2, b"\\N\nz\n", b"x\n\\N\n\nz\n")
    assert buffers == [bytearray(b"kept\n0\t7\t\n"), bytearray(b"3\t5\tx\n")]
    assert list(counts) == [2, 1]


def test_a_router_through_c_or_python_spools_the_same_frames_whatever_the_writes(monkeypatch):
    rng = random.Random(7)
    refs, ordinal, _, _ = _setup(rng)
    for front in (True, False):
        text = _table(rng, front=front, link=1, ncols=4, rows=3000, refs=refs, ordered=front)
        results = []
        for cut, keys in ((gk._cut, refs), (gk._cut, None), (gk.cut_reference, None)):
            monkeypatch.setattr(gk, "_cut", cut)
            monkeypatch.setattr(gk._GroupRouter, "FLUSH", 50)
            spool, stored = _Spool(), io.BytesIO()
            router = gk._GroupRouter(
                spool,
                "t",
                stored,
                ordinal,
                groups=-(-len(refs) // 16),
                group_size=16,
                link=None if front else 1,
                keys=keys,
            )
            cuts = random.Random(3)
            at = 0
            while at < len(text):  # writes cut mid-line, some a single byte
                step = cuts.choice([1, 2, 17, 500, 70_000])
                router.write(memoryview(text)[at : at + step])
                at += step
            router.finish()
            results.append((spool.frames, stored.getvalue(), router.plain.hexdigest(), router.rows))
        assert results[0] == results[1] == results[2]
        frames, stored, plain, rows = results[0]
        assert rows == text.count(b"\n")
        if not front:
            assert plain == hashlib.sha256(text).hexdigest()
        lines = sum(
            zstandard.ZstdDecompressor().decompressobj().decompress(f).count(b"\n") for *_, f in frames
        )
        assert lines + stored.count(b"\n") == rows


def test_the_c_cut_refuses_bad_input_without_quoting_the_data():
    secret = b"Zo\xc3\xab Secret"
    buffers, counts = [bytearray()], array.array("q", [0])
    with pytest.raises(ValueError, match="has no field 3") as caught:
        _dereg_cut.cut(secret + b"\t1\n", 3, {}, 4, 0, buffers, counts)
    assert "Secret" not in str(caught.value)
    with pytest.raises(ValueError, match="out of range"):
        _dereg_cut.cut(secret + b"\n", 0, {secret: 9}, 4, 0, buffers, counts)
    with pytest.raises(ValueError, match="out of range"):
        _dereg_cut.cut(secret + b"\n", 0, {secret: -1}, 4, 0, buffers, counts)
    with pytest.raises(TypeError):
        _dereg_cut.cut(secret + b"\n", 0, {secret: "0"}, 4, 0, buffers, counts)
    with pytest.raises(TypeError, match="array"):
        _dereg_cut.cut(b"", None, {}, 4, 0, buffers, array.array("d", [0]))
    with pytest.raises(ValueError, match="one item per group"):
        _dereg_cut.cut(b"", None, {}, 4, 0, buffers, array.array("q", [0, 0]))
    with pytest.raises(TypeError, match="bytearray"):
        _dereg_cut.cut(b"", None, {}, 4, 0, [b""], counts)
    with pytest.raises(ValueError, match="group_size"):
        _dereg_cut.cut(b"", None, {}, 0, 0, buffers, counts)
    assert buffers == [bytearray()] and list(counts) == [0]


class _Spool:
    def __init__(self):
        self.frames: list[tuple[int, str, int, bytes]] = []

    def spool_frame(self, group, table, entries, frame, *, more=False):
        self.frames.append((group, table, entries, frame))
