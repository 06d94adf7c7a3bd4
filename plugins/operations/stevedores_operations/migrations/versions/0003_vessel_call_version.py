"""Vessel calls carry a version, bumped by every change, so that caches can tell when
the dashboard's figures are out of date whichever process made the change.

Revision ID: 0003_vessel_call_version
Revises: 0002_tally_category
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_vessel_call_version"
down_revision = "0002_tally_category"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``version`` (0 for existing rows)."""
    op.add_column("operations_vessel_calls",
                  sa.Column("version", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("operations_vessel_calls") as batch:
        batch.drop_column("version")
