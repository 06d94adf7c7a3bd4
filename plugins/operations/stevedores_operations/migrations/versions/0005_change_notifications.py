"""PostgreSQL notifies every change to vessel calls and tallies, whoever makes it.

A statement-level trigger on each table runs ``pg_notify('stevedores_operations_changes',
<table name>)``: PostgreSQL delivers it to every listening session when the writing
transaction commits (nothing on a rollback; one notification per table and transaction,
as PostgreSQL folds identical ones), so a write through the app, another instance,
``psql`` or a script reaches every worker's change listener (changes.py). SQLite has no
notifications: nothing to do there (its pages keep one fingerprint query per request).

Revision ID: 0005_change_notifications
Revises: 0004_session_epoch
"""

from alembic import op

revision = "0005_change_notifications"
down_revision = "0004_session_epoch"
branch_labels = None
depends_on = None

#: Written out here, not imported: a migration is history and must not follow later code.
CHANNEL = "stevedores_operations_changes"
FUNCTION = "operations_notify_change"
TRIGGER = "operations_changes_notify"
TABLES = ("operations_vessel_calls", "operations_tallies")


def upgrade() -> None:
    """The notifying function and one trigger per table (PostgreSQL only)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    RETURN NULL;
END
$$""")
    for table in TABLES:
        op.execute(f"CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")


def downgrade() -> None:
    """Drop the triggers and the function (PostgreSQL only)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
