"""Where Dereg finds its state, policy and manifests.

Every location can be overridden by an environment variable so that tests, the demo stack and
production each point at their own files. Nothing here reads Airflow's configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """Folder for the embedded stack's files (`DEREG_STATE_DIR`, default `.state/`)."""
    return Path(os.environ.get("DEREG_STATE_DIR", REPO_ROOT / ".state")).resolve()


def include_dir() -> Path:
    return Path(os.environ.get("DEREG_INCLUDE_DIR", REPO_ROOT / "include")).resolve()


def companies_dir() -> Path:
    """Folder of company manifests (`DEREG_COMPANIES_DIR`, default `include/companies/`)."""
    return Path(os.environ.get("DEREG_COMPANIES_DIR", include_dir() / "companies")).resolve()


def policy_dir() -> Path:
    return include_dir() / "policy"


def templates_dir() -> Path:
    return include_dir() / "templates"


def store_url() -> str:
    """SQLAlchemy URL of the compliance store (`DEREG_STORE_URL`, default a SQLite file in state)."""
    return os.environ.get("DEREG_STORE_URL") or f"sqlite:///{state_dir() / 'compliance.db'}"


def keyring_path() -> Path:
    """Path of the local keyring file (`DEREG_KEYRING`, default `.state/keyring.json`)."""
    return Path(os.environ.get("DEREG_KEYRING", state_dir() / "keyring.json")).resolve()


def output_dir() -> Path:
    """Where reports and certificates are written (`DEREG_OUTPUT_DIR`, default `.state/output`)."""
    return Path(os.environ.get("DEREG_OUTPUT_DIR", state_dir() / "output")).resolve()


def scratch_pg_url() -> str | None:
    """A PostgreSQL server for restore scratch schemas (DEREG_SCRATCH_PG_URL); None: each
    PostgreSQL backup is restored on its source's own server, else into scratch SQLite."""
    return os.environ.get("DEREG_SCRATCH_PG_URL") or None


def retry_delay_seconds() -> float:
    """Wait before a failed stage's retry in the DAGs (`DEREG_RETRY_DELAY_SECONDS`, default 30)."""
    raw = os.environ.get("DEREG_RETRY_DELAY_SECONDS", "30")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"DEREG_RETRY_DELAY_SECONDS must be a number of seconds, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"DEREG_RETRY_DELAY_SECONDS must not be negative (got {raw!r})")
    return value
