"""Every detector module has the same surface, its docstring examples hold, its search verbs are the
shared ones of `dereg.classify.base`, and its mask never shows a whole value of the labelled corpus."""

from __future__ import annotations

import doctest

import pytest

from dereg.classify import ALL_DETECTORS, BY_CATEGORY, DETECTORS, base
from devtools.demo.corpus import build_corpus

SURFACE = ("CATEGORY", "LEVEL", "EMBEDDED", "PATTERN", "compact", "is_valid", "mask", "finditer", "find")


@pytest.mark.parametrize("module", ALL_DETECTORS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_surface_and_docstring_examples(module):
    missing = [name for name in SURFACE if not hasattr(module, name)]
    assert missing == []
    assert module.LEVEL in ("general", "sensitive") or module.CATEGORY == "organisation_id"
    assert module.EMBEDDED == (module in DETECTORS)
    assert BY_CATEGORY[module.CATEGORY] is module
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0, module.__name__


@pytest.mark.parametrize("module", ALL_DETECTORS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_search_verbs_are_the_shared_ones(module):
    """finditer and find are built by dereg.classify.base, not written again in the detector."""
    assert module.finditer.__module__ == module.find.__module__ == base.__name__
    assert module.finditer.__qualname__.split(".")[0] in ("in_text", "whole_value")
    assert module.find.__qualname__.split(".")[0] == "find_with"


def test_shared_verbs_docstring_examples():
    result = doctest.testmod(base)
    assert result.attempted > 0 and result.failed == 0


def test_masks_never_show_a_whole_corpus_value():
    corpus = build_corpus(rows=100, seed=3)
    shown, checked = [], set()
    for table in corpus.tables:
        for column in table.columns:
            truths = column.embedded or [{(cat, v)} for cat in column.categories for v in column.values]
            for truth in truths:
                for category, value in truth:
                    module = BY_CATEGORY[category]
                    text = str(value)
                    if not module.is_valid(value) or len(text) < 2:
                        continue
                    checked.add(category)
                    if module.compact(text) in module.mask(text):
                        shown.append((table.name, column.name, category))
    assert shown == []
    assert len(checked) >= 12, checked


@pytest.mark.parametrize(
    "module", [m for m in ALL_DETECTORS if not getattr(m, "PLAIN_DIGITS", True)], ids=lambda m: m.__name__
)
def test_plain_digits_false_means_no_run_of_digits_is_taken(module):
    # the engine does not ask such a detector about a run of plain digits (`_ColumnStats.add`)
    import random

    rng = random.Random(4)
    runs = [str(n) for n in range(1000)] + ["0" * n for n in range(1, 30)]
    runs += ["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40))) for _ in range(5000)]
    for run in runs:
        for check in ("is_valid", "is_plausible", "is_certain"):
            if hasattr(module, check):
                assert not getattr(module, check)(run), (check, run)
