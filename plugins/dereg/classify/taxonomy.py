"""The category vocabulary (`include/policy/taxonomy.yaml`): id, level, Chinese and English names."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import yaml

from dereg import config
from dereg.errors import DeregError


@dataclass(frozen=True)
class Category:
    id: str
    level: str  # "sensitive" | "general"
    zh: str
    en: str


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Category]:
    try:
        data = yaml.safe_load(open(path, encoding="utf-8"))
        return {c["id"]: Category(c["id"], c["level"], c["zh"], c["en"]) for c in data["categories"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise DeregError(f"taxonomy {path} cannot be read ({type(exc).__name__}: {exc})") from None


def load_taxonomy() -> dict[str, Category]:
    return _load(str(config.policy_dir() / "taxonomy.yaml"))


def level_of(categories: list[str]) -> str | None:
    if not categories:
        return None
    taxonomy = load_taxonomy()
    return "sensitive" if any(taxonomy[c].level == "sensitive" for c in categories if c in taxonomy) else "general"
