"""The notice records in the compliance store: one row per recipient and run, marked `sending`
before the notice goes out and `sent`, `refused` or `failed` after, so that a retried task never
sends twice and never skips anyone. Marks are written many per transaction (`mark_many`); see
`dereg.notify.deliver` for the batching and what a crash can leave behind.

Recipients are identified by `recipient_ref`, a keyed hash of the lower-cased address: the store
proves who was notified when the address is shown to it, without holding the address itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from functools import lru_cache

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
    # pending | sending | sent | refused | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("children", sa.Integer, nullable=False, default=0),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("company_id", "run_id", "recipient_ref", name="uq_notice"),
)


@lru_cache(maxsize=65536)  # delivery and the answer link both need it, per notice
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


def mark_many(store: Engine, *, company_id: str, run_id: str, items: list[dict]) -> None:
    """Write many marks in one transaction. Each item has `ref`, `status`, `message_id`,
    `children`, and optionally `error` and `attempt` (True: count one more attempt)."""
    if not items:
        return
    now = _now()
    scope = (notices.c.company_id == company_id) & (notices.c.run_id == run_id)
    with store.begin() as conn:
        refs = [i["ref"] for i in items]
        existing: set[str] = set()
        for start in range(0, len(refs), 500):
            existing.update(
                conn.execute(
                    sa.select(notices.c.recipient_ref).where(
                        scope, notices.c.recipient_ref.in_(refs[start : start + 500])
                    )
                ).scalars()
            )
        inserts, updates, seen = [], [], set()
        for item in items:
            if item["ref"] in existing or item["ref"] in seen:
                updates.append(
                    {
                        "b_ref": item["ref"],
                        "b_status": item["status"],
                        "b_error": item.get("error"),
                        "b_now": now,
                        "b_inc": 1 if item.get("attempt") else 0,
                    }
                )
            else:
                seen.add(item["ref"])
                inserts.append(
                    {
                        "company_id": company_id,
                        "run_id": run_id,
                        "recipient_ref": item["ref"],
                        "status": item["status"],
                        "message_id": item["message_id"],
                        "children": item["children"],
                        "attempts": 1 if item.get("attempt") else 0,
                        "error": item.get("error"),
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        if inserts:
            conn.execute(notices.insert(), inserts)
        if updates:
            conn.execute(
                notices.update()
                .where(scope, notices.c.recipient_ref == sa.bindparam("b_ref"))
                .values(
                    status=sa.bindparam("b_status"),
                    error=sa.bindparam("b_error"),
                    updated_at=sa.bindparam("b_now"),
                    attempts=notices.c.attempts + sa.bindparam("b_inc"),
                ),
                updates,
            )


def unconfirmed(store: Engine, company_id: str, run_id: str) -> list[str]:
    """Message-IDs of the notices marked `sending` whose outcome was never recorded."""
    with store.connect() as conn:
        return list(
            conn.execute(
                sa.select(notices.c.message_id)
                .where(
                    notices.c.company_id == company_id,
                    notices.c.run_id == run_id,
                    notices.c.status == "sending",
                )
                .order_by(notices.c.id)
            ).scalars()
        )


def resolve(store: Engine, company_id: str, run_id: str, message_ids: list[str], *, delivered: bool) -> int:
    """An operator's verdict on unconfirmed notices (from the relay's log): delivered ones become
    `sent`, the others `pending` so that the next run of the stage sends them. Returns how many
    rows changed; only rows still `sending` are touched."""
    with store.begin() as conn:
        result = conn.execute(
            notices.update()
            .where(
                notices.c.company_id == company_id,
                notices.c.run_id == run_id,
                notices.c.status == "sending",
                notices.c.message_id.in_(message_ids),
            )
            .values(
                status="sent" if delivered else "pending",
                error="confirmed delivered by operations" if delivered else "confirmed not delivered",
                updated_at=_now(),
            )
        )
        return result.rowcount or 0


def counts(store: Engine, company_id: str, run_id: str) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(notices.c.status, sa.func.count())
            .where(notices.c.company_id == company_id, notices.c.run_id == run_id)
            .group_by(notices.c.status)
        )
        return {status: n for status, n in rows}
