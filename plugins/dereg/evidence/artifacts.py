"""Artifacts: the JSON documents stages hand to each other (inventory, classification, plan, ...).

They live in the compliance store rather than in XCom or local files, so that a task on any worker
finds what an earlier task produced, and an auditor finds what each decision was based on. They
hold names, counts and masked samples only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dereg.evidence.store import metadata

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("company_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("company_id", "run_id", "name", name="uq_artifact"),
)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@contextlib.contextmanager
def _on(store: Engine | Connection, write: bool) -> Iterator[Connection]:
    """A connection of `store`: itself when it is one (inside its caller's transaction), else a
    new one (a transaction of its own when `write`)."""
    if isinstance(store, Connection):
        yield store
    else:
        with store.begin() if write else store.connect() as conn:
            yield conn


def put_artifact(store: Engine | Connection, company_id: str, run_id: str, name: str, body: Any) -> str:
    """Store (or replace, on a retry) an artifact; returns its sha256. `store`: the compliance
    store's engine, or a connection of it whose transaction the write joins."""
    text = canonical_json(body)
    digest = hashlib.sha256(text.encode()).hexdigest()
    now = dt.datetime.now(dt.UTC).isoformat()
    key = (artifacts.c.company_id == company_id) & (artifacts.c.run_id == run_id) & (artifacts.c.name == name)
    with _on(store, write=True) as conn:
        conn.execute(artifacts.delete().where(key))
        conn.execute(
            artifacts.insert().values(
                company_id=company_id, run_id=run_id, name=name, sha256=digest, body=text, created_at=now
            )
        )
    return digest


def get_artifact(store: Engine | Connection, company_id: str, run_id: str, name: str) -> Any:
    key = (artifacts.c.company_id == company_id) & (artifacts.c.run_id == run_id) & (artifacts.c.name == name)
    with _on(store, write=False) as conn:
        row = conn.execute(sa.select(artifacts.c.body).where(key)).first()
    if row is None:
        from dereg.errors import GateError

        raise GateError(
            f"artifact {name!r} of company {company_id} run {run_id} is missing from the "
            "compliance store: the stage that produces it has not run (clear it and re-run)"
        )
    return json.loads(row[0])
