"""What the quality tests of classification share (the realworld packs, the unseen databases):
a source classified as `dereg scan` would, and its column recall and precision checked against
a truth (dereg.classify.quality), the figures printed with counts and column names only."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from dereg.classify.engine import classify_source
from dereg.classify.quality import Score, score
from dereg.inventory.sql import inventory_source
from dereg.model import ClassificationResult

#: recall and precision each at least this, in sample and in full mode (issue 16)
TARGET = 0.95


def classify(url: str, *, full: bool, source_id: str) -> ClassificationResult:
    """Every table of `url` inventoried and classified, no subject table named."""
    engine = sa.create_engine(url)
    try:
        inventory = inventory_source(engine, source_id)
        return classify_source(
            engine, inventory, closure_date=dt.date(2026, 12, 31), subject_table=None, full=full
        )
    finally:
        engine.dispose()


def check_quality(label: str, result: ClassificationResult, truth: dict, capsys) -> Score:
    """Print `label`'s figures and the columns missed and falsely flagged, then require every
    table read, no empty column called personal, and recall and precision of at least TARGET."""
    s = score(result, truth)
    with capsys.disabled():
        print(f"\n{label}: {s.line()}")
        if s.missed:
            print(f"{label} missed: {', '.join(s.missed)}")
        if s.false:
            print(f"{label} false positives: {', '.join(s.false)}")
    # every table is read (a reflected type that is not what it says must not make one unreadable)
    assert [p["table"] for p in result.problems] == []
    assert s.empty_flagged == 0, "an empty column was called personal by its name alone"
    assert s.recall >= TARGET, s.missed
    assert s.precision >= TARGET, s.false
    return s
