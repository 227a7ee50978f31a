"""Baseline: the compliance store of release 0.1.0 (before migrations).

On a new store this creates every table. A store that release 0.1.0 made with `create_all` has
them already (no `dereg_alembic_version`): only what is missing is created, and the store is then
recorded at this revision, so the next revisions apply to it as to any other.

Revision ID: 0001
Revises:
"""

from alembic import op

from dereg.evidence.migrations import baseline

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    baseline.metadata().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    baseline.metadata().drop_all(op.get_bind())
