"""Classification quality on data Dereg did not write: column recall and precision against each
realworld pack's truth.json, in sample and in full mode (scoring rules: dereg.classify.quality).
The per-pack figures are printed (counts and column names only, never values)."""

from __future__ import annotations

import pytest

from dereg.classify.names import hints
from tests.integration.quality_check import check_quality, classify

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["sample", "full"])
@pytest.mark.parametrize("pack", ["pagila", "mall"])
def test_recall_and_precision_on_realworld_packs(pack, mode, request, capsys):
    url, truth = request.getfixturevalue(pack)
    result = classify(url, full=mode == "full", source_id="pack")
    check_quality(f"[realworld] {pack} {mode}", result, truth, capsys)


def test_empty_columns_are_reported_with_what_their_name_suggests(pagila):
    url, truth = pagila
    result = classify(url, full=False, source_id="pack")
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
