"""Accounts carry a session epoch: a browser session is valid only while the epoch it was
issued under is the account's current one. Logout, deactivation and a password change
bump it, which ends every existing session of the account server-side.

Revision ID: 0004_session_epoch
Revises: 0003_vessel_call_version
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_session_epoch"
down_revision = "0003_vessel_call_version"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``session_epoch`` (0 for existing accounts)."""
    op.add_column("operations_users",
                  sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("operations_users") as batch:
        batch.drop_column("session_epoch")
