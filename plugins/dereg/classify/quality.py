"""Column recall and precision of a classification against a ground truth (a realworld pack's
`truth.json`), for the quality test and the benchmark: counts and column names only, never values.

Scoring rules (docs/classification.md, "Measured on data we did not write"):
- a column under `truth` is personal, one under `clean` is not; `ambiguous` columns are not scored;
- a truth column marked `empty: true` holds no value, so it cannot be personal data found in the
  database: it is not scored either. Dereg must report it as "empty, name suggests X" and never as
  personal by its name alone; `Score.empty_flagged` counts the empty columns it called personal
  (the quality test requires none);
- a column counts as found when the classification gives it any personal category (which one is
  not scored: a login that is a mobile number is personal whichever of the two it is called).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dereg.model import ClassificationResult


@dataclass
class Score:
    """One pack's column-level confusion counts; `missed` and `false` name columns (no values)."""

    true_positives: int = 0
    false_negatives: int = 0
    false_positives: int = 0
    empty_flagged: int = 0
    missed: list[str] = field(default_factory=list)
    false: list[str] = field(default_factory=list)
    unscored: int = 0

    @property
    def recall(self) -> float:
        found = self.true_positives + self.false_negatives
        return self.true_positives / found if found else 1.0

    @property
    def precision(self) -> float:
        called = self.true_positives + self.false_positives
        return self.true_positives / called if called else 1.0

    def line(self) -> str:
        return (
            f"recall {self.recall:.3f} ({self.true_positives}/{self.true_positives + self.false_negatives}) "
            f"precision {self.precision:.3f} ({self.true_positives}/{self.true_positives + self.false_positives})"
            f"; empty columns called personal: {self.empty_flagged}"
        )


def load_truth(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def score(result: ClassificationResult, truth: dict) -> Score:
    """Compare `result` with a pack's truth; tables are matched by bare name (packs use one schema)."""
    called = {(f.table.rsplit(".", 1)[-1], f.column): f.personal for f in result.columns}
    s = Score()
    for table, columns in truth["truth"].items():
        for column, facts in columns.items():
            personal = called.get((table, column), False)
            if facts.get("empty"):
                s.unscored += 1
                s.empty_flagged += bool(personal)
            elif personal:
                s.true_positives += 1
            else:
                s.false_negatives += 1
                s.missed.append(f"{table}.{column}")
    for table, columns in truth["clean"].items():
        for column in columns:
            if called.get((table, column), False):
                s.false_positives += 1
                s.false.append(f"{table}.{column}")
    s.unscored += sum(len(c) for c in truth.get("ambiguous", {}).values())
    return s
