"""Classification quality on data Dereg did not write: column recall and precision against each
realworld pack's truth.json, in sample and in full mode (scoring rules: dereg.classify.quality).
The per-pack figures are printed (counts and column names only, never values)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dereg.classify.engine import classify_source
from dereg.classify.names import hints
from dereg.classify.quality import score
from dereg.inventory.sql import inventory_source

pytestmark = pytest.mark.integration

TARGET = 0.95


def _classify(url: str, full: bool):
    engine = sa.create_engine(url)
    try:
        inventory = inventory_source(engine, "pack")
        return classify_source(
            engine, inventory, closure_date=dt.date(2026, 12, 31), subject_table=None, full=full
        )
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode", ["sample", "full"])
@pytest.mark.parametrize("pack", ["pagila", "mall"])
def test_recall_and_precision_on_realworld_packs(pack, mode, request, capsys):
    url, truth = request.getfixturevalue(pack)
    result = _classify(url, full=mode == "full")
    s = score(result, truth)
    with capsys.disabled():
        print(f"\n[realworld] {pack} {mode}: {s.line()}")
        if s.missed:
            print(f"[realworld] {pack} {mode} missed: {', '.join(s.missed)}")
        if s.false:
            print(f"[realworld] {pack} {mode} false positives: {', '.join(s.false)}")
    # every table is read (a reflected type that is not what it says must not make one unreadable)
    assert [p["table"] for p in result.problems] == []
    assert s.empty_flagged == 0, "an empty column was called personal by its name alone"
    assert s.recall >= TARGET, s.missed
    assert s.precision >= TARGET, s.false


def test_empty_columns_are_reported_with_what_their_name_suggests(pagila):
    url, truth = pagila
    result = _classify(url, full=False)
    by_column = {(f.table.rsplit(".", 1)[-1], f.column): f for f in result.columns}
    empty = [(t, c) for t, cols in truth["truth"].items() for c, facts in cols.items() if facts.get("empty")]
    assert empty
    suggested = 0
    for table, column in empty:
        finding = by_column[(table, column)]
        assert not finding.personal
        if hints(column):
            assert finding.reason.startswith("empty, name suggests"), finding.reason
            suggested += 1
    assert suggested
