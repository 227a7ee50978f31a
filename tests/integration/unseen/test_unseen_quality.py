"""Classification quality on databases whose rules were not written against them (issue 16): a
dental clinic and an English-named CRM on PostgreSQL, a training school with pinyin and camelCase
column names and an HR system with Chinese column names on MariaDB (generate.py); a kindergarten
with table-prefixed columns on PostgreSQL, a courier company on MariaDB and a gym with UPPER_CASE
abbreviated columns on SQLite (round2.py). Column recall and precision against each truth, in sample
and in full mode, scored as the realworld packs are (dereg.classify.quality). Counts and column
names only are printed, never values."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dereg.classify.engine import classify_source
from dereg.classify.quality import score
from dereg.inventory.sql import inventory_source

pytestmark = pytest.mark.integration

TARGET = 0.95


@pytest.mark.parametrize("mode", ["sample", "full"])
def test_recall_and_precision_on_unseen_databases(unseen, mode, capsys):
    db, url, truth = unseen
    engine = sa.create_engine(url)
    try:
        inventory = inventory_source(engine, "unseen")
        result = classify_source(
            engine, inventory, closure_date=dt.date(2026, 12, 31), subject_table=None, full=mode == "full"
        )
    finally:
        engine.dispose()
    s = score(result, truth)
    with capsys.disabled():
        print(f"\n[unseen] {db} {mode}: {s.line()}")
        if s.missed:
            print(f"[unseen] {db} {mode} missed: {', '.join(s.missed)}")
        if s.false:
            print(f"[unseen] {db} {mode} false positives: {', '.join(s.false)}")
    assert [p["table"] for p in result.problems] == []
    assert s.empty_flagged == 0, "an empty column was called personal by its name alone"
    assert s.recall >= TARGET, s.missed
    assert s.precision >= TARGET, s.false
