"""The operations schema as SQLAlchemy Core tables (the head revision of the migrations).

Every table is prefixed ``operations_`` so that other plugins can keep tables of their
own in the same database. Timestamps are stored in UTC (timezone-aware columns).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

users = Table(
    "operations_users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Sessions carry the epoch they were issued under; logout, deactivation, a new password bump it (0004).
    Column("session_epoch", Integer, nullable=False, server_default="0"),
    CheckConstraint("role IN ('clerk', 'manager')", name="ck_operations_users_role"),
)

api_tokens = Table(
    "operations_api_tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("operations_users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(64), nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

vessel_calls = Table(
    "operations_vessel_calls", metadata,
    Column("id", Integer, primary_key=True),
    Column("vessel_name", String(120), nullable=False),
    Column("shipping_line", String(120), nullable=False),
    Column("vessel_type", String(16), nullable=False),
    Column("operation_type", String(24), nullable=False),
    Column("berth", String(32), nullable=False),
    Column("planned_discharge_auto", Integer, nullable=False, server_default="0"),
    Column("planned_discharge_heavy", Integer, nullable=False, server_default="0"),
    Column("planned_load_auto", Integer, nullable=False, server_default="0"),
    Column("planned_load_heavy", Integer, nullable=False, server_default="0"),
    Column("planned_start", DateTime(timezone=True), nullable=False),
    Column("planned_end", DateTime(timezone=True), nullable=False),
    Column("status", String(24), nullable=False, server_default="expected"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("arrived_at", DateTime(timezone=True)),
    Column("berthed_at", DateTime(timezone=True)),
    Column("operations_active_at", DateTime(timezone=True)),
    Column("operations_complete_at", DateTime(timezone=True)),
    Column("departed_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, server_default="0"),  # bumped by every change (0003)
    Index("ix_operations_vessel_calls_status", "status"),
)

tallies = Table(
    "operations_tallies", metadata,
    Column("id", Integer, primary_key=True),
    Column("vessel_call_id", Integer, ForeignKey("operations_vessel_calls.id"), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("category", String(16), nullable=False, server_default="auto"),
    Column("units", Integer, nullable=False),
    Column("shift", String(32), nullable=False),
    Column("zone", String(32), nullable=False),
    Column("clerk_id", Integer, ForeignKey("operations_users.id"), nullable=True),
    Column("clerk", String(64), nullable=False),
    Column("tallied_at", DateTime(timezone=True), nullable=False),
    Column("idempotency_key", String(64), nullable=False),
    UniqueConstraint("vessel_call_id", "idempotency_key", name="uq_operations_tallies_idempotency"),
    CheckConstraint("units > 0", name="ck_operations_tallies_units_positive"),
    Index("ix_operations_tallies_call_time", "vessel_call_id", "tallied_at"),
)
