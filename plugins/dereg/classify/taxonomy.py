"""The shared vocabulary of personal-information categories (include/policy/taxonomy.yaml).

Detectors and name hints yield category ids; this module says which level (general or sensitive)
each id has and how it is called in Chinese and English (for notices and the certificate).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from dereg.config import policy_dir
from dereg.errors import DeregError

LEVELS = ("general", "sensitive")


@dataclass(frozen=True)
class Category:
    id: str
    level: str  # "general" | "sensitive"
    zh: str
    en: str


class TaxonomyError(DeregError):
    """The taxonomy file is missing or malformed."""


def load_taxonomy(path: Path | str | None = None) -> dict[str, Category]:
    """Categories by id, from `path` or include/policy/taxonomy.yaml."""
    path = Path(path) if path else policy_dir() / "taxonomy.yaml"
    return dict(_load(str(path.resolve())))


@lru_cache(maxsize=8)
def _load(path: str) -> tuple[tuple[str, Category], ...]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TaxonomyError(
            f"taxonomy {path} cannot be read ({type(exc).__name__}); restore "
            "include/policy/taxonomy.yaml or point DEREG_INCLUDE_DIR at a folder with it"
        ) from exc
    items, problems = [], []
    for i, entry in enumerate(data.get("categories") or [] if isinstance(data, dict) else []):
        if not isinstance(entry, dict) or not all(entry.get(k) for k in ("id", "level", "zh", "en")):
            problems.append(f"categories[{i}] needs id, level, zh and en")
        elif entry["level"] not in LEVELS:
            problems.append(f"categories[{i}] ({entry['id']}): level must be general or sensitive")
        else:
            items.append((entry["id"], Category(entry["id"], entry["level"], entry["zh"], entry["en"])))
    if problems or not items:
        raise TaxonomyError(
            f"taxonomy {path} is invalid: {'; '.join(problems) or 'no categories'}; "
            "fix the file (each entry: id, level general|sensitive, zh, en)"
        )
    return tuple(items)


def level_of(categories: str | Iterable[str]) -> str | None:
    """Level of one category id, or the highest level of several (None for none).

    An id missing from the taxonomy counts as general personal information."""
    taxonomy = load_taxonomy()
    if isinstance(categories, str):
        found = taxonomy.get(categories)
        return found.level if found else "general"
    levels = [taxonomy[c].level if c in taxonomy else "general" for c in categories]
    if not levels:
        return None
    return "sensitive" if "sensitive" in levels else "general"
