"""The archive's database: its URL, its engine (SQLite or PostgreSQL), its migrations.

``make_engine`` makes no connection; ``upgrade`` runs the Alembic migrations in
``services/archive/migrations`` (``upgrade head`` at start-up and before a rebuild).
SQLite files run in WAL mode with every write transaction begun IMMEDIATE (one writer at a
time, readers beside it); PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from pydantic_core import from_json, to_json
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from services.common.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def database_url(raw: str) -> URL:
    """Parse and check an archive URL: sqlite or postgresql (psycopg 3 unless a driver is named)."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError("ARCHIVE_DATABASE_URL: not a database URL") from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"ARCHIVE_DATABASE_URL: unsupported database {backend!r} (sqlite or postgresql)")
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(raw_url: str) -> Engine:
    """An engine for the archive URL (no connection is made until first use)."""
    url = database_url(raw_url)
    if url.get_backend_name() == "postgresql":
        # JSONB through pydantic-core's parser and serialiser (Rust): the stdlib's were a
        # fifth of the archive's CPU when trails are read back to be refolded
        engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8,
                               json_deserializer=from_json, json_serializer=json_text)

        @event.listens_for(engine, "connect")
        def _utc(dbapi_connection: Any, record: Any) -> None:
            # times come back in UTC (psycopg then gives them the tzinfo datetime.UTC, which
            # UtcDateTime passes through; a zone such as Etc/UTC cost a conversion per value)
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET TIME ZONE 'UTC'")
            dbapi_connection.commit()

        return engine
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            _wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def json_text(value: Any) -> str:
    """A JSON value as text (for JSON columns): pydantic-core's serialiser."""
    return to_json(value).decode()


_MIGRATING = threading.Lock()  # Alembic's context is process-global: one migration at a time


def _wal(cursor: Any) -> None:
    """Put a SQLite file in WAL mode (readers beside the writer), once: the mode persists.

    Switching needs the file to itself and does not wait for a busy one, so processes that
    open a new file together try a few times; one of them switches it for all.
    """
    for attempt in range(20):
        if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:  # locked by another connection: look again shortly
            time.sleep(0.05 * (attempt + 1))
    log.warning("archive: SQLite file stays in rollback-journal mode (could not switch to WAL)")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the archive's Alembic migrations up to ``revision`` (idempotent; instances that start
    together take turns: see migrations/env.py)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _MIGRATING, engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
