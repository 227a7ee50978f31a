"""The compliance store's schema as release 0.1.0 created it (`create_all`, before migrations).

Frozen: the tables as they were, not as the modules declare them now, so that the baseline
revision builds the same store for ever and a later revision's change is made by that revision.
Never edit this file; add a revision instead (see `dereg.evidence.migrations`).
"""

from __future__ import annotations

import sqlalchemy as sa


def metadata() -> sa.MetaData:
    """A new MetaData holding the 0.1.0 tables."""
    md = sa.MetaData()
    sa.Table(
        "ledger",
        md,
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
    sa.Table(
        "ledger_head",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    sa.Table(
        "artifacts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("company_id", "run_id", "name", name="uq_artifact"),
    )
    sa.Table(
        "backups",
        md,
        sa.Column("backup_id", sa.String(64), primary_key=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("bucket", sa.String(255), nullable=False),
        sa.Column("prefix", sa.String(500), nullable=False),
        sa.Column("manifest_key", sa.String(800), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tables_json", sa.Text, nullable=False),
        sa.Column("total_rows", sa.BigInteger, nullable=False),
        sa.Column("retain_until", sa.String(40)),
        sa.Column("object_lock", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("completed_at", sa.String(40)),
    )
    sa.Table(
        "backup_keys",
        md,
        sa.Column("backup_id", sa.String(64), primary_key=True),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("destroyed_at", sa.String(40)),
    )
    sa.Table(
        "notices",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("recipient_ref", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("children", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("company_id", "run_id", "recipient_ref", name="uq_notice"),
    )
    sa.Table(
        "answers",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("recipient_ref", sa.String(64), nullable=False),
        sa.Column("choice", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("source", sa.String(200)),
        sa.Column("answered_at", sa.String(40), nullable=False),
        sa.Index("ix_answers_run", "company_id", "run_id", "recipient_ref"),
    )
    sa.Table(
        "fulfilments",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("recipient_ref", sa.String(64), nullable=False),
        sa.Column("choice", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("actor", sa.String(200)),
        sa.Column("at", sa.String(40), nullable=False),
        sa.UniqueConstraint("company_id", "run_id", "recipient_ref", "choice", name="uq_fulfilment"),
    )
    sa.Table(
        "copies",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("company_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("recipient_ref", sa.String(64), nullable=False),
        sa.Column("kek_id", sa.String(80), nullable=False),
        sa.Column("wrapped_key", sa.Text, nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("company_id", "run_id", "recipient_ref", name="uq_copy"),
    )
    return md
