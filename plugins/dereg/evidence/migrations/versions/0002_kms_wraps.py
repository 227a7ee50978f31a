"""backup_keys holds KMS wraps: `kek_id` up to 255 characters (`kms:` and a key ARN), `wrapped_key`
as text (a KMS ciphertext blob in base64 is longer than an AES-KW wrap's 200 characters).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_keys") as batch:
        batch.alter_column(
            "kek_id", existing_type=sa.String(64), type_=sa.String(255), existing_nullable=False
        )
        batch.alter_column(
            "wrapped_key", existing_type=sa.String(200), type_=sa.Text(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("backup_keys") as batch:
        batch.alter_column(
            "wrapped_key", existing_type=sa.Text(), type_=sa.String(200), existing_nullable=False
        )
        batch.alter_column(
            "kek_id", existing_type=sa.String(255), type_=sa.String(64), existing_nullable=False
        )
