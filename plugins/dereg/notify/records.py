"""The notice records in the compliance store: one row per recipient and run, written before and
after each send, so that a retried task never sends twice and never skips anyone.

Recipients are identified by `recipient_ref`, a keyed hash of the lower-cased address: the store
proves who was notified when the address is shown to it, without holding the address itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.evidence.store import metadata

notices = sa.Table(
    "notices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("company_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("recipient_ref", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | sending | sent | refused | failed
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("children", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("company_id", "run_id", "recipient_ref", name="uq_notice"),
)


def recipient_ref(pseudonym_key: bytes, address: str) -> str:
    return hmac.new(pseudonym_key, b"notice\0" + address.strip().lower().encode(), hashlib.sha256).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def statuses(store: Engine, company_id: str, run_id: str) -> dict[str, str]:
    """recipient_ref -> status for one run."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(notices.c.recipient_ref, notices.c.status).where(
                notices.c.company_id == company_id, notices.c.run_id == run_id
            )
        )
        return {r.recipient_ref: r.status for r in rows}


def mark(
    store: Engine,
    *,
    company_id: str,
    run_id: str,
    ref: str,
    status: str,
    message_id: str,
    children: int,
    error: str | None = None,
    attempt: bool = False,
) -> None:
    key = (
        (notices.c.company_id == company_id) & (notices.c.run_id == run_id) & (notices.c.recipient_ref == ref)
    )
    now = _now()
    with store.begin() as conn:
        exists = conn.execute(sa.select(notices.c.id).where(key)).first()
        if exists is None:
            conn.execute(
                notices.insert().values(
                    company_id=company_id,
                    run_id=run_id,
                    recipient_ref=ref,
                    status=status,
                    message_id=message_id,
                    children=children,
                    attempts=1 if attempt else 0,
                    error=error,
                    created_at=now,
                    updated_at=now,
                )
            )
        else:
            values = {"status": status, "error": error, "updated_at": now}
            if attempt:
                values["attempts"] = notices.c.attempts + 1
            conn.execute(notices.update().where(key).values(**values))


def counts(store: Engine, company_id: str, run_id: str) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(notices.c.status, sa.func.count())
            .where(notices.c.company_id == company_id, notices.c.run_id == run_id)
            .group_by(notices.c.status)
        )
        return {status: n for status, n in rows}
