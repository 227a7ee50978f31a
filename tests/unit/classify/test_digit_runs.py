"""The numpy checks of whole digit-run columns (`classify.digit_runs`, issue 16) accept exactly what
the detectors accept, and the column-at-a-time blanking finds exactly the hits of the line-by-line
one (which the stream's own hits are compared with in test_digit_fields.py)."""

from __future__ import annotations

import random
from datetime import date, timedelta

import numpy as np
import pytest

from dereg.classify import bank_card, cn_mobile, cn_resident_id, digit_runs, scanner


def _chars(values: list[str]) -> np.ndarray:
    return np.array([[ord(c) for c in v] for v in values], dtype=np.uint32)


def _resident_id(rng: random.Random) -> str:
    province = rng.choice(sorted(cn_resident_id.PROVINCES) + ["10", "99", "00"])
    region = province + rng.choice(["0000", "0105", f"{rng.randrange(10000):04d}"])
    born = date(1890, 1, 1) + timedelta(days=rng.randrange(140 * 366))
    when = (
        born.strftime("%Y%m%d")
        if rng.random() < 0.9
        else f"{rng.randrange(1800, 2200)}{rng.randrange(0, 14):02d}{rng.randrange(0, 33):02d}"
    )
    head = region + when + f"{rng.randrange(1000):03d}"
    check = cn_resident_id.calc_check_digit(head) if rng.random() < 0.8 else rng.choice("0123456789X")
    if check == "X" and rng.random() < 0.5:
        check = "x"
    return head + check


def _luhn_completed(head: str) -> str:
    for d in "0123456789":
        if bank_card.luhn_ok(head + d):
            return head + d
    raise AssertionError


def _card(rng: random.Random, length: int) -> str:
    prefix = rng.choice([*bank_card.PREFIXES, "2221", "2720", "2720", "2721", "2088", "30", "1", "0"])
    head = prefix + "".join(rng.choice("0123456789") for _ in range(length - 1 - len(prefix)))
    if rng.random() < 0.05:
        head = prefix + prefix[-1] * (length - 1 - len(prefix))  # few distinct digits
    return _luhn_completed(head) if rng.random() < 0.8 else head + rng.choice("0123456789")


@pytest.mark.parametrize("seed", range(3))
def test_resident_ids_as_the_detector_says(seed):
    rng = random.Random(seed)
    values = [_resident_id(rng) for _ in range(20000)]
    got = digit_runs.resident_ids(_chars(values)).tolist()
    expected = [cn_resident_id.is_valid(v) for v in values]
    assert got == expected
    assert 2000 < sum(expected) < 19000


@pytest.mark.parametrize("length", [16, 17, 19])
def test_bank_cards_as_the_detector_says(length):
    rng = random.Random(length)
    values = [_card(rng, length) for _ in range(20000)]
    got = digit_runs.bank_cards(_chars(values)).tolist()
    expected = [bank_card.is_valid(v) for v in values]
    assert got == expected
    assert 1000 < sum(expected) < 19000


def test_mobiles_as_the_detector_says():
    rng = random.Random(11)
    values = ["".join(rng.choice("0123456789") for _ in range(11)) for _ in range(5000)]
    values += [
        "1" + rng.choice("0123456789") + "".join(rng.choice("0123456789") for _ in range(9))
        for _ in range(5000)
    ]
    got = digit_runs.mobiles(_chars(values)).tolist()
    assert got == [cn_mobile.is_valid(v) for v in values]
    assert sum(got) > 3000


def _digit_value(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return _resident_id(rng)
    if kind < 0.55:
        return _card(rng, rng.choice([16, 17, 18, 19]))
    if kind < 0.7:
        return "1" + "".join(rng.choice("0123456789") for _ in range(10))
    if kind < 0.8:
        return "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 24)))
    return rng.choice(
        [
            "01062345678",
            "008613812345678",
            "91350100M000100Y43",
            "2088102122524333",
            "x",
            "X",
            "12X",
            "\\N",
            "",
            "abc",
            "13812345678x",
            "6222 0212 3456 7890 128",
            "张三",
            "１３８１２３４５６７８",
        ]
    )


def _hits(groups) -> list:
    return sorted((s, f, d.CATEGORY, raw) for g in groups for s, f, d, raw in g.tuples())


@pytest.mark.parametrize("seed", range(4))
def test_column_at_a_time_finds_what_line_by_line_finds(seed):
    rng = random.Random(100 + seed)
    lines = [
        "\t".join(
            [str(k), _digit_value(rng), rng.choice(["张三", "备注 13812345678", ""]), _digit_value(rng)]
        )
        for k in range(4000)
    ]
    block = "\n".join(lines) + "\n"
    by_column = scanner._blank_digit_runs_by_column(block, 7, (1, 3))
    assert by_column is not None
    text, groups = by_column
    expected_text, expected_groups = scanner._blank_digit_runs_by_line(block, 7, (1, 3))
    assert text == expected_text
    assert _hits(groups) == _hits(expected_groups)
    assert len(_hits(groups)) > 2500


@pytest.mark.parametrize("other", ["😀 13812345678", "\ud800", "\udc00\ud800", "\ud800\udc00", "张三"])
def test_column_at_a_time_with_any_character_between(other):
    """The block is read as UTF-16 code units when each character is one (UTF-32 otherwise): a
    character outside the Basic Multilingual Plane, or lone surrogates that UTF-16 would read back
    as one character, change neither the offsets nor the text given back."""
    rng = random.Random(7)
    lines = [
        "\t".join([str(k), _digit_value(rng), other if k % 7 == 3 else "", _digit_value(rng)])
        for k in range(500)
    ]
    block = "\n".join(lines) + "\n"
    text, groups = scanner._blank_digit_runs_by_column(block, 7, (1, 3))
    expected_text, expected_groups = scanner._blank_digit_runs_by_line(block, 7, (1, 3))
    assert text == expected_text
    assert _hits(groups) == _hits(expected_groups)
    assert len(_hits(groups)) > 300


def test_lines_with_different_numbers_of_fields_go_line_by_line():
    block = "1\t13812345678\n2\t13812345678\textra\n"
    assert scanner._blank_digit_runs_by_column(block, 0, (1,)) is None
    text, groups = scanner._blank_digit_runs(block, 0, (1,))
    assert text == "1\t           \n2\t           \textra\n"
    assert [h[2].CATEGORY for h in _hits_of(groups)] == ["cn_mobile", "cn_mobile"]


def _hits_of(groups):
    return [hit for g in groups for hit in g.tuples()]


@pytest.mark.parametrize(
    "closure", [date(2026, 12, 31), date(2028, 2, 28), date(2028, 2, 29), date(2027, 3, 1)]
)
def test_minors_a_batch_at_a_time_as_row_by_row(closure):
    from dereg.classify import engine

    rng = random.Random(closure.toordinal())
    rows = []
    for k in range(6000):
        born = date(2008, 1, 1) + timedelta(days=rng.randrange(8 * 366))
        if rng.random() < 0.05:
            born = date(2012 + rng.randrange(4) * 4, 2, 29)
        birth = rng.choice([born, None, None, born.isoformat(), "", "not a date"])
        resident_id = (
            _resident_id(rng)
            if rng.random() < 0.8
            else rng.choice([None, "", "12345", "1101 0519491231002X"])
        )
        if rng.random() < 0.3 and resident_id:
            head = resident_id[:6] + born.strftime("%Y%m%d") + resident_id[14:17]
            resident_id = head + cn_resident_id.calc_check_digit(head)
        rows.append((k, birth, resident_id))
    for birth_col, id_col in ((object(), object()), (None, object()), (object(), None)):
        shaped = [(k, *([birth] if birth_col else []), *([rid] if id_col else [])) for k, birth, rid in rows]
        expected = [r for r in shaped if engine._is_minor(r[1:], birth_col, id_col, closure)]
        got = engine._minor_rows(shaped, 1, birth_col, id_col, closure)
        assert sorted(got) == sorted(expected)
        assert len(expected) > 100


def test_digit_and_email_columns_probed_with_lines_of_any_length():
    """The probe counts a column at a time when the first lines have the same fields, value by
    value otherwise: the same columns either way (empty values and NULLs count as absent)."""
    even = "1\t13812345678\ta@example.com\t\\N\n2\t\t\\N\tx\n3\t11010519491231002X\tb@example.com\t\n\n"
    ragged = even + "4\t13812345678\n"
    for block in (even, ragged):
        assert scanner._digit_columns(block) == (1,)
        assert scanner._email_columns(block) == (2,)
    assert scanner._digit_columns("1\tabc\n2\t13812345678\n3\tdef\n") == ()
    assert scanner._digit_columns("1\tabc\n2\t13812345678\n3\t\\N\n") == (1,)
