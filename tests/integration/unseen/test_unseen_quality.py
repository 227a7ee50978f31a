"""Classification quality on databases whose rules were not written against them (issue 16): a
dental clinic and an English-named CRM on PostgreSQL, a training school with pinyin and camelCase
column names and an HR system with Chinese column names on MariaDB (generate.py); a kindergarten
with table-prefixed columns on PostgreSQL, a courier company on MariaDB and a gym with UPPER_CASE
abbreviated columns on SQLite (round2.py). Column recall and precision against each truth, in sample
and in full mode, scored as the realworld packs are (dereg.classify.quality). Counts and column
names only are printed, never values."""

from __future__ import annotations

import pytest

from tests.integration.quality_check import check_quality, classify

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["sample", "full"])
def test_recall_and_precision_on_unseen_databases(unseen, mode, capsys):
    db, url, truth = unseen
    result = classify(url, full=mode == "full", source_id="unseen")
    check_quality(f"[unseen] {db} {mode}", result, truth, capsys)
