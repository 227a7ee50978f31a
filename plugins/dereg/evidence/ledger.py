"""The ledger: an append-only, hash-chained record of everything each closure stage did.

Each entry's hash covers the previous entry's hash and the entry's own fields (canonical JSON), so
changing, removing or reordering any entry breaks every hash after it. `ledger_head` holds the
hash of the last entry, so that dropping entries from the end is detected too. Stages prove their
preconditions by looking up entries here; the certificate cites them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.dialects import dialect_for
from dereg.evidence.artifacts import canonical_json
from dereg.evidence.store import metadata

GENESIS = "0" * 64

ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("entry_id", sa.String(40), nullable=False, unique=True),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("company_id", sa.String(64), nullable=False, index=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

ledger_head = sa.Table(
    "ledger_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    entry_id: str
    ts: str
    company_id: str
    run_id: str
    stage: str
    event: str
    actor: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass
class LedgerVerification:
    ok: bool
    entries_checked: int
    first_broken_seq: int | None = None
    first_broken_entry_id: str | None = None
    reason: str = ""


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    ts: str,
    company_id: str,
    run_id: str,
    stage: str,
    event: str,
    actor: str,
    details_json: str,
) -> str:
    """sha256 of the previous hash followed by the canonical JSON of the entry's fields."""
    fields = {
        "seq": seq,
        "ts": ts,
        "company_id": company_id,
        "run_id": run_id,
        "stage": stage,
        "event": event,
        "actor": actor,
        "details": json.loads(details_json),
    }
    return hashlib.sha256((prev_hash + canonical_json(fields)).encode()).hexdigest()


def _entry(row) -> LedgerEntry:
    return LedgerEntry(
        seq=row.seq,
        entry_id=row.entry_id,
        ts=row.ts,
        company_id=row.company_id,
        run_id=row.run_id,
        stage=row.stage,
        event=row.event,
        actor=row.actor,
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class Ledger:
    """The ledger in the compliance store `store` (a SQLAlchemy engine from `open_store`)."""

    def __init__(self, store: Engine):
        self.store = store

    def append(
        self,
        *,
        company_id: str,
        run_id: str,
        stage: str,
        event: str,
        actor: str,
        details: dict[str, Any] | None = None,
    ) -> LedgerEntry:
        details_json = canonical_json(details or {})
        ts = dt.datetime.now(dt.UTC).isoformat()
        with self.store.begin() as conn:  # SQLite: BEGIN IMMEDIATE (see store.py), so appends serialise
            # serialise writers, including the very first one (when there is no head row to lock yet)
            query = dialect_for(conn).lock_ledger_head(
                conn, sa.select(ledger_head.c.seq, ledger_head.c.hash).where(ledger_head.c.id == 1)
            )
            head = conn.execute(query).first()
            seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
            digest = entry_hash(
                prev,
                seq=seq,
                ts=ts,
                company_id=company_id,
                run_id=run_id,
                stage=stage,
                event=event,
                actor=actor,
                details_json=details_json,
            )
            entry_id = f"L{seq:06d}-{digest[:8]}"
            conn.execute(
                ledger.insert().values(
                    seq=seq,
                    entry_id=entry_id,
                    ts=ts,
                    company_id=company_id,
                    run_id=run_id,
                    stage=stage,
                    event=event,
                    actor=actor,
                    details=details_json,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            if head is None:
                conn.execute(ledger_head.insert().values(id=1, seq=seq, hash=digest))
            else:
                conn.execute(ledger_head.update().where(ledger_head.c.id == 1).values(seq=seq, hash=digest))
        return LedgerEntry(
            seq=seq,
            entry_id=entry_id,
            ts=ts,
            company_id=company_id,
            run_id=run_id,
            stage=stage,
            event=event,
            actor=actor,
            details=json.loads(details_json),
            prev_hash=prev,
            hash=digest,
        )

    def entries(self, *, company_id: str | None = None, run_id: str | None = None) -> list[LedgerEntry]:
        query = sa.select(ledger).order_by(ledger.c.seq)
        if company_id is not None:
            query = query.where(ledger.c.company_id == company_id)
        if run_id is not None:
            query = query.where(ledger.c.run_id == run_id)
        with self.store.connect() as conn:
            return [_entry(r) for r in conn.execute(query)]

    def latest(self, *, company_id: str, run_id: str, stage: str, event: str) -> LedgerEntry | None:
        query = (
            sa.select(ledger)
            .where(
                ledger.c.company_id == company_id,
                ledger.c.run_id == run_id,
                ledger.c.stage == stage,
                ledger.c.event == event,
            )
            .order_by(ledger.c.seq.desc())
            .limit(1)
        )
        with self.store.connect() as conn:
            row = conn.execute(query).first()
        return _entry(row) if row else None

    def get(self, entry_id: str) -> LedgerEntry | None:
        with self.store.connect() as conn:
            row = conn.execute(sa.select(ledger).where(ledger.c.entry_id == entry_id)).first()
        return _entry(row) if row else None

    def head(self) -> LedgerEntry | None:
        with self.store.connect() as conn:
            row = conn.execute(sa.select(ledger).order_by(ledger.c.seq.desc()).limit(1)).first()
        return _entry(row) if row else None

    def verify(self) -> LedgerVerification:
        """Recompute every hash and link; check the head matches the last entry."""
        prev, expected_seq, checked, last = GENESIS, 1, 0, None
        with self.store.connect() as conn:
            head = conn.execute(sa.select(ledger_head).where(ledger_head.c.id == 1)).first()
            for row in conn.execute(sa.select(ledger).order_by(ledger.c.seq)).yield_per(1000):
                problem = None
                if row.seq != expected_seq:
                    problem = f"entry {expected_seq} is missing (next is {row.seq})"
                elif row.prev_hash != prev:
                    problem = "its prev_hash does not match the hash of the entry before it"
                else:
                    recomputed = entry_hash(
                        prev,
                        seq=row.seq,
                        ts=row.ts,
                        company_id=row.company_id,
                        run_id=row.run_id,
                        stage=row.stage,
                        event=row.event,
                        actor=row.actor,
                        details_json=row.details,
                    )
                    if recomputed != row.hash:
                        problem = "its content does not match its hash (the entry was altered)"
                if problem:
                    return LedgerVerification(
                        False, checked, row.seq, row.entry_id, f"entry {row.entry_id}: {problem}"
                    )
                checked += 1
                prev, expected_seq, last = row.hash, row.seq + 1, row
        if last is None and head is None:
            return LedgerVerification(True, 0, reason="the ledger is empty")
        if head is None or last is None or head.seq != last.seq or head.hash != last.hash:
            return LedgerVerification(
                False,
                checked,
                (last.seq + 1) if last else 1,
                None,
                f"the ledger head records entry {head.seq if head else 'none'} but the last entry present is "
                f"{last.seq if last else 'none'}: entries were removed from the end",
            )
        return LedgerVerification(True, checked, reason=f"{checked} entries, head {last.hash}")
