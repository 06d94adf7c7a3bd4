"""Tallies record their cargo category (auto / heavy); index tallies by vessel call and time.

Existing tallies are backfilled from their vessel's type: a heavy-only vessel's tallies
become ``heavy``, every other one ``auto`` (the only category the first schema tracked).

Revision ID: 0002_tally_category
Revises: 0001_initial
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_tally_category"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``category`` (default auto), backfill heavy-only vessels, add the time index."""
    op.add_column("operations_tallies",
                  sa.Column("category", sa.String(16), nullable=False, server_default="auto"))
    op.execute(
        "UPDATE operations_tallies SET category = 'heavy' WHERE vessel_call_id IN "
        "(SELECT id FROM operations_vessel_calls WHERE vessel_type = 'heavy')"
    )
    op.create_index("ix_operations_tallies_call_time", "operations_tallies", ["vessel_call_id", "tallied_at"])


def downgrade() -> None:
    """Drop the index and the column (categories are lost)."""
    op.drop_index("ix_operations_tallies_call_time", table_name="operations_tallies")
    with op.batch_alter_table("operations_tallies") as batch:
        batch.drop_column("category")
