"""The full scan is linear in the size of every cell (issue 16; issue 18 item 8): one huge cell
gives the hits the same bytes give as short lines, however a stream of it is cut, in about the
same time. Before, each hit looked back to its line start: a 4 MB cell took minutes."""

from __future__ import annotations

import random
import time

from dereg.classify.scanner import personal_spans, scan_block, scan_stream

# valid identifiers (each checked below) and decoys around them
_VALUES = (
    "13812345678",
    "zhang.wei@example.com",
    "11010519491231002X",
    "6222021234567890128",
    "010-62345678",
    "58.215.12.1",
)
_FILLER = (
    "订单 2024031512345678 已发货，",
    "version 2.1.0.3 ",
    "备注：请联系 ",
    "课程代码 C20240315 ",
    "ok ",
)


def _records(n: int, seed: int = 16) -> list[str]:
    rng = random.Random(seed)
    return [
        "".join(rng.choice(_FILLER) for _ in range(rng.randint(1, 4)))
        + rng.choice(_VALUES)
        + " "
        + rng.choice(_FILLER)
        for _ in range(n)
    ]


def _hits(found) -> list[tuple[str, str]]:
    return [(category, value) for _, _, category, value in found]


def test_the_values_are_valid():
    for value in _VALUES:
        assert personal_spans(value), value


def test_a_4mb_cell_gives_the_hits_of_the_same_bytes_as_short_lines():
    records = _records(60_000)
    short = "\n".join(records) + "\n"
    cell = " ".join(records) + "\n"  # the same bytes with spaces for line breaks: one value
    assert len(cell.encode()) >= 4 << 20
    started = time.perf_counter()
    expected = _hits(scan_block(short))
    as_lines = time.perf_counter() - started
    started = time.perf_counter()
    found = list(scan_block(cell))
    as_cell = time.perf_counter() - started
    assert _hits(found) == expected
    assert len(expected) >= len(records)
    assert {(line, field) for line, field, _, _ in found} == {(0, 0)}
    # a guard, not a benchmark: the quadratic scan took minutes here (benchmarks/classify.py
    # prints the ratio)
    assert as_cell < 30 + 5 * as_lines


def test_a_stream_cut_anywhere_gives_the_hits_of_the_whole_block():
    rng = random.Random(7)
    records = _records(3_000)
    rows = ["\t".join(records[i : i + 3]) for i in range(0, len(records), 3)]
    rows[10] = " ".join(records[:2000])  # one long value among short ones
    block = "\n".join(rows) + "\n"
    whole = list(scan_block(block))
    for _ in range(5):
        pieces, at = [], 0
        while at < len(block):
            size = rng.choice((1, 7, 100, 5000, 20_000))
            pieces.append(block[at : at + size])
            at += size
        assert list(scan_stream(pieces)) == whole


def test_line_and_field_offsets_follow_the_stream():
    block = "a\t13812345678\nb\tc\tzhang.wei@example.com x 13812345678\n\t\t\t58.215.12.1\n"
    found = list(scan_stream([block[:5], block[5:30], block[30:]]))
    second = block.index("b\t")
    third = block.index("\t\t\t")
    assert found == [
        (0, 1, "cn_mobile", "13812345678"),
        (second, 2, "email", "zhang.wei@example.com"),
        (second, 2, "cn_mobile", "13812345678"),
        (third, 3, "ip_address", "58.215.12.1"),
    ]


def test_a_pattern_running_across_fields_is_searched_field_by_field():
    # "QQ<tab>12345678" is a label in one field and digits in the next: no QQ account; the field
    # after them still is searched
    block = "x QQ\t12345678\t13812345678\n"
    assert _hits(scan_block(block)) == [("cn_mobile", "13812345678")]
    assert [f for _, f, _, _ in scan_block(block)] == [2]
