"""The full scan checks the values of digit-run columns (ID, card and mobile number columns) one by
one instead of through the candidate search (`scanner.digit_fields`, issue 16): its hits plus the
stream's over the blanked rest must be exactly the stream's hits over the rows as they were,
however the stream is cut, with the values that decide between kinds (an 18-digit run that fails
the ID check but passes Luhn, a company's credit code, a 0086 mobile) and values that are no
digit run at all in the same columns."""

from __future__ import annotations

import random
import re

from dereg.classify import scanner
from dereg.classify.scanner import digit_fields, stream_hits

_IN_DIGIT_COLUMNS = (
    "11010519491231002X",  # resident ID ending in X
    "11010519491231002x",
    "110105194912310021",  # wrong check digit: no ID (and no card: an ID's shape)
    "6222021234567890128",  # UnionPay card
    "6222 0212 3456 7890 128",  # the same in groups: no digit run, left to the stream
    "622202123456789012",  # 18 digits failing Luhn
    "13812345678",
    "008613812345678",
    "+86 138 1234 5678",
    "01062345678",  # landline as one run
    "91350100M000100Y43",  # credit code: not personal, yet no other kind may claim it
    "2024031512345678",  # order number
    "12345",
    "tel 13812345678 x",  # ends in x, yet no digit run
    "",
    "\\N",
)
_OTHERS = ("张三", "备注 13812345678 已联系", "zhang.wei@example.com", "记-202503-0355", "42", "")


def _rows(n: int, seed: int = 16) -> str:
    rng = random.Random(seed)
    lines = []
    for k in range(n):
        # mostly digit runs in columns 1 and 3, so both are read as digit-run columns
        id_like = rng.choice(_IN_DIGIT_COLUMNS[:3] + _IN_DIGIT_COLUMNS) if rng.random() < 0.9 else "abc"
        card = rng.choice(_IN_DIGIT_COLUMNS)
        lines.append("\t".join((str(k), id_like, rng.choice(_OTHERS), card, rng.choice(_OTHERS))))
    return "\n".join(lines) + "\n"


def _collect(found: list):
    """An on_hits that keeps every hit as stream_hits gives it."""
    return lambda groups: found.extend(hit for group in groups for hit in group.tuples())


def _with_digit_fields(pieces) -> list:
    found: list = []
    rest = list(stream_hits(digit_fields(pieces, _collect(found))))
    return sorted((s, f, d.CATEGORY, raw) for s, f, d, raw in found + rest)


def _plain(pieces) -> list:
    return sorted((s, f, d.CATEGORY, raw) for s, f, d, raw in stream_hits(pieces))


def test_digit_run_columns_give_the_hits_of_the_stream():
    block = _rows(3000)
    expected = _plain([block])
    assert {c for _, _, c, _ in expected} >= {"cn_resident_id", "bank_card", "cn_mobile", "phone", "email"}
    found: list = []
    blanked = "".join(digit_fields([block], _collect(found)))
    assert len(found) > 1000 and len(blanked) == len(block)  # the digit path did the most
    assert _with_digit_fields([block]) == expected


def test_pieces_cut_inside_lines_and_blocks_of_whole_lines_mixed(monkeypatch):
    monkeypatch.setattr(scanner, "DIGIT_PART_CHARS", 1000)  # blanked in parts of a few lines each
    block = _rows(2000, seed=17)
    lines = block.splitlines(keepends=True)
    whole = ["".join(lines[:700]), "".join(lines[700:1400])]
    tail = "".join(lines[1400:])
    cut = [tail[:5], tail[5:4001], tail[4001:]]  # cut inside lines: passed on as they are
    expected = _plain([block])
    assert _with_digit_fields(whole + cut) == expected
    assert _with_digit_fields([block[i : i + 997] for i in range(0, len(block), 997)]) == expected


def test_a_table_without_digit_runs_or_plain_addresses_is_passed_on_unchanged():
    block = "1\t张三\t邮箱 zhang.wei@example.com\n2\t李四\t备注 13812345678\n"
    found: list = []
    assert list(digit_fields([block], _collect(found))) == [block]
    assert found == []


_IN_EMAIL_COLUMNS = (
    "zhang.wei@example.com",
    "yangqiao46@example.net",
    "li-si_2020@mail.school.edu.cn",
    "pp.zhang@example.com",  # opens with p: left to the stream
    "Zhang.Wei@Example.com",
    "13812345678@qq.com",  # a mobile number first
    "wxid_abcdefghijklmn12@qq.com",
    "x..y@example.com",
    "a" * 70 + "@example.com",  # too long a local part
    "zhang@example.c0m",
    "zhang@例子.cn",
    "zhang@example.com 13812345678",
    "e12345678@example.com",
    "\\N",
    "",
)


def test_plain_email_columns_give_the_hits_of_the_stream():
    rng = random.Random(21)
    lines = []
    for k in range(3000):
        mail = rng.choice(_IN_EMAIL_COLUMNS[:3] * 4 + _IN_EMAIL_COLUMNS)
        lines.append("\t".join((str(k), rng.choice(_OTHERS), mail, rng.choice(_IN_DIGIT_COLUMNS))))
    block = "\n".join(lines) + "\n"
    assert scanner._email_columns(block) == (2,)
    found: list = []
    blanked = "".join(digit_fields([block], _collect(found)))
    assert sum(1 for hit in found if hit[2].CATEGORY == "email") > 1000 and len(blanked) == len(block)
    assert _with_digit_fields([block]) == _plain([block])


def test_a_plain_address_is_a_valid_one():
    # the column path takes what _PLAIN_EMAIL takes without asking email.is_valid: the same verdicts
    from dereg.classify import email

    rng = random.Random(5)
    alphabet = "abcz09._-"
    values = list(_IN_EMAIL_COLUMNS)
    for _ in range(20_000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.choice((1, 3, 12, 63, 64, 65, 80))))
        labels = [
            "".join(rng.choice("ab0-") for _ in range(rng.choice((1, 5, 61, 63))))
            for _ in range(rng.choice((1, 2, 5)))
        ]
        values.append(f"{rng.choice('aqz')}{local}@{'.'.join(labels)}.{rng.choice(('cn', 'com', 'c0m'))}")
    lengths = r"(?=[^@]{1,64}@[^@]{1,253}\Z)"
    assert scanner._PLAIN_EMAIL.pattern.startswith(lengths)
    shaped = re.compile(scanner._PLAIN_EMAIL.pattern.removeprefix(lengths))  # the shape alone
    taken = [v for v in values if scanner._PLAIN_EMAIL.fullmatch(v)]
    assert len(taken) > 1000
    assert all(email.is_valid(v) for v in taken)
    assert all(
        email.is_valid(v) == bool(scanner._PLAIN_EMAIL.fullmatch(v)) for v in values if shaped.fullmatch(v)
    )


def _every_detector_spans(text: str) -> list:
    # `scanner.spans` without its stop at a digit run's first hit: every detector tried
    taken, found = [], []
    for detector in scanner.embedded_detectors():
        for start, end, value in detector.finditer(text):
            if not any(start < e and s < end for s, e in taken):
                taken.append((start, end))
                found.append((detector.CATEGORY, start, end, value))
    return sorted(found, key=lambda f: f[1])


def test_a_digit_run_holds_one_hit_at_its_start():
    # `spans` stops at the first hit in a digit run: no embedded pattern matches inside one
    rng = random.Random(9)
    runs = [v for v in _IN_DIGIT_COLUMNS if scanner._digit_run(v)]
    runs += ["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 24))) for _ in range(3000)]
    runs += [
        "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9)) for _ in range(300)
    ]
    runs += [r[:-1] + "X" for r in runs[:500] if len(r) > 1]
    for run in runs:
        for detector in scanner.embedded_detectors():
            assert all(m.start() == 0 for m in detector.PATTERN.finditer(run)), (detector.CATEGORY, run)
        assert scanner.spans(run) == _every_detector_spans(run), run
        assert len(scanner.spans(run)) <= 1
