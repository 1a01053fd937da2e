"""Alembic's environment: migrations run on the connection runner hands over (see
runner.store.migrate), with runner's own version table."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from runner.errors import StoreError
from runner.store.migrate import VERSION_TABLE


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection) or context.is_offline_mode():
        raise StoreError("runner's migrations run through runner (runner db upgrade), on a "
                         "live connection")
    # render_as_batch: SQLite alters a table by copying it; elsewhere it is plain ALTER.
    context.configure(connection=connection, version_table=VERSION_TABLE,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
