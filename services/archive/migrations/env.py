"""Alembic environment of the archive: migrates the connection the caller hands in.

``services.archive.adapters.upgrade(engine)`` runs ``upgrade head`` on a connection of the
archive's engine (``config.attributes["connection"]``). Without one (the ``alembic`` command
line, with ``sqlalchemy.url`` set in its configuration) it connects to that URL; offline
(``--sql``) it prints the SQL for that URL's dialect. On PostgreSQL a transaction-scoped
advisory lock makes instances that start together migrate one after the other.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text

from services.archive.tables import metadata

MIGRATION_LOCK = 7_120_412_000_001  # pg_advisory_xact_lock key of the archive's migrations


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


def run() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    given = config.attributes.get("connection")
    if given is not None:
        _migrate(given)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


run()
