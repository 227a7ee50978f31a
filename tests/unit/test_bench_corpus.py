"""The classification benchmark's labelled values are labelled right, and its scores count right.

The benchmark itself (Presidio, pg_dump) is not part of the suite; its corpus and arithmetic are,
because a wrong label would make every figure it prints wrong. Truth is checked with independent
validators (python-stdnum, ipaddress), not with the engine being measured.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from stdnum import luhn
from stdnum.cn import ric

from benchmarks.classify import (
    CATEGORIES,
    ENTITY_CATEGORY,
    Score,
    labelled_values,
    presidio_recognizers,
    project_corpus_values,
    resident_id_ok,
)

_REMARK = re.compile(r"[\u4e00-\u9fff{]")  # Chinese text or JSON around the identifier
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\d{15,19}(?![0-9A-Za-z])")


def test_every_category_is_labelled_and_the_labels_are_true():
    values = labelled_values(3000, seed=11)
    counts = {c: sum(1 for _, labels in values if c in labels) for c in CATEGORIES}
    assert all(n >= 100 for n in counts.values()), counts
    alone = [(text, labels) for text, labels in values if labels and not _REMARK.search(text)]
    assert len(alone) >= 900
    for text, labels in alone:  # an identifier alone: check it as a whole
        if labels == {"cn_resident_id"}:
            assert ric.is_valid(text)
        if labels == {"bank_card"}:
            assert luhn.is_valid(text.replace(" ", ""))
        if labels == {"ip_address"}:
            ipaddress.IPv4Address(text)


def test_decoys_hold_no_valid_resident_id_and_no_mobile():
    decoys = [text for text, labels in labelled_values(3000, seed=12) if not labels]
    assert len(decoys) >= 900
    for text in decoys:
        for run in _DIGIT_RUN.findall(text):
            assert not ric.is_valid(run), "a decoy holds a valid resident ID"
        assert not re.search(r"(?<!\d)1[3-9]\d{9}(?!\d)", text), "a decoy holds a mobile number"


def test_the_corpus_is_the_same_for_the_same_seed():
    assert labelled_values(500, seed=3) == labelled_values(500, seed=3)
    assert labelled_values(500, seed=3) != labelled_values(500, seed=4)


def test_score_counts_pairs_per_category():
    truth = [frozenset({"email"}), frozenset({"email", "cn_mobile"}), frozenset()]
    found = [{"email"}, {"cn_mobile"}, {"email"}]
    score = Score.of(truth, found)
    assert score.recall("email") == 0.5
    assert score.precision("email") == 0.5
    assert score.recall("cn_mobile") == 1.0
    assert score.recall() == 2 / 3
    assert score.precision() == 2 / 3


def test_presidio_recognizers_find_the_labelled_kinds_and_skip_decoys():
    pytest.importorskip("presidio_analyzer")  # installed by make bench-classify, not by make venv
    recognizers = {r.supported_entities[0]: r for r in presidio_recognizers("en")}
    assert set(ENTITY_CATEGORY) == set(recognizers)

    def found(entity: str, text: str) -> bool:
        return bool(recognizers[entity].analyze(text, [entity], None))

    assert found("CN_RESIDENT_ID", "身份证号11010519491231002X，已核对")
    assert not found("CN_RESIDENT_ID", "身份证号110105194912310021，已核对")  # wrong check digit
    assert found("BANK_CARD", "卡号6222 0212 3456 7894")
    assert not found("BANK_CARD", "11010519491231002X")
    assert found("CN_MOBILE", "家长手机：+86 138-1234-5678")
    assert not found("CN_MOBILE", "学号12345678901")
    assert found("IP_ADDRESS", "登录IP 192.168.1.20，")
    assert not found("IP_ADDRESS", "版本 300.1.2.3")


def test_project_corpus_values_carry_only_the_compared_kinds_and_decoys_carry_none():
    values = project_corpus_values(2000)
    assert len(values) >= 2000
    labels = {c for _, truth in values for c in truth}
    assert labels == set(CATEGORIES)  # every compared kind occurs, and nothing else (no names)
    decoys = [text for text, truth in values if not truth]
    assert any(_DIGIT_RUN.search(text) for text in decoys)  # order numbers, bad IDs among them
    for text in decoys:
        for run in _DIGIT_RUN.findall(text):
            assert not resident_id_ok(run)


def test_presidio_side_resident_id_check_agrees_with_stdnum_where_stdnum_can_answer():
    for text, _ in labelled_values(2000, seed=21):
        for run in _DIGIT_RUN.findall(text):
            if len(run) != 18:
                continue
            try:
                expected = ric.is_valid(run)
            except KeyError:  # stdnum's region table lacks some entries
                continue
            assert resident_id_ok(run) == expected
