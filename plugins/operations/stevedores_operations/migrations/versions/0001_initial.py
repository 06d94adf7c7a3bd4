"""Initial schema: accounts, API tokens, vessel calls and cargo tallies.

Revision ID: 0001_initial
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the four tables."""
    op.create_table(
        "operations_users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TZ, nullable=False),
        sa.CheckConstraint("role IN ('clerk', 'manager')", name="ck_operations_users_role"),
    )
    op.create_table(
        "operations_api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("operations_users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "operations_vessel_calls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("vessel_name", sa.String(120), nullable=False),
        sa.Column("shipping_line", sa.String(120), nullable=False),
        sa.Column("vessel_type", sa.String(16), nullable=False),
        sa.Column("operation_type", sa.String(24), nullable=False),
        sa.Column("berth", sa.String(32), nullable=False),
        sa.Column("planned_discharge_auto", sa.Integer, nullable=False, server_default="0"),
        sa.Column("planned_discharge_heavy", sa.Integer, nullable=False, server_default="0"),
        sa.Column("planned_load_auto", sa.Integer, nullable=False, server_default="0"),
        sa.Column("planned_load_heavy", sa.Integer, nullable=False, server_default="0"),
        sa.Column("planned_start", TZ, nullable=False),
        sa.Column("planned_end", TZ, nullable=False),
        sa.Column("status", sa.String(24), nullable=False, server_default="expected"),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("arrived_at", TZ),
        sa.Column("berthed_at", TZ),
        sa.Column("operations_active_at", TZ),
        sa.Column("operations_complete_at", TZ),
        sa.Column("departed_at", TZ),
    )
    op.create_index("ix_operations_vessel_calls_status", "operations_vessel_calls", ["status"])
    op.create_table(
        "operations_tallies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("vessel_call_id", sa.Integer, sa.ForeignKey("operations_vessel_calls.id"), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("shift", sa.String(32), nullable=False),
        sa.Column("zone", sa.String(32), nullable=False),
        sa.Column("clerk_id", sa.Integer, sa.ForeignKey("operations_users.id"), nullable=True),
        sa.Column("clerk", sa.String(64), nullable=False),
        sa.Column("tallied_at", TZ, nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.UniqueConstraint("vessel_call_id", "idempotency_key", name="uq_operations_tallies_idempotency"),
        sa.CheckConstraint("units > 0", name="ck_operations_tallies_units_positive"),
    )


def downgrade() -> None:
    """Drop everything this revision created."""
    op.drop_table("operations_tallies")
    op.drop_index("ix_operations_vessel_calls_status", table_name="operations_vessel_calls")
    op.drop_table("operations_vessel_calls")
    op.drop_table("operations_api_tokens")
    op.drop_table("operations_users")
