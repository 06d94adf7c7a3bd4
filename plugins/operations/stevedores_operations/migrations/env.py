"""Alembic environment of the operations plugin: runs on the connection handed in by migrate.py."""

from alembic import context
from stevedores_operations.migrate import VERSION_TABLE
from stevedores_operations.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite", transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
