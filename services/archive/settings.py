"""Archive settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from services.common.staff_tokens import StaffTokenSettings

SQLITE_FILE = "archive.sqlite3"


class ArchiveSettings(StaffTokenSettings):
    """Archive settings: the shared ones (see CommonSettings) and the staff token ones
    (StaffTokenSettings: DESK_JWT_SECRET, DESK_JWT_SECRET_FILE, DESK_JWKS, ...: GET
    /v1/reports/kpi needs a staff token) plus

    ARCHIVE_DATABASE_URL        SQLAlchemy URL of the archive database: sqlite:///PATH or
                                postgresql://USER:PASSWORD@HOST:PORT/DB (driver psycopg 3 unless
                                one is named); may hold a password, so it is never printed
                                (default: SQLite in archive.sqlite3 under COMPLAINTS_DATA_DIR)
    ARCHIVE_HTTP_PORT           port of /metrics and /healthz (default 8084)
    ARCHIVE_CONSUMER            batch | faust (default batch): batch reads the topics with
                                aiokafka's getmany straight into one write per batch; faust
                                runs faust's agent (one record at a time through its stream).
                                Every instance of the group must use the same one (their
                                group protocols differ)
    ARCHIVE_BATCH_SIZE          records archived together (default 20000, 1 to 100000): a batch
                                folds each complaint once, however many of its events it holds
                                (a backlog of 32,000 events drained at 3,400-3,800/s in batches
                                of 5000, 8,000-8,400/s in batches of 20000); up to 1,000
                                complaints are written per transaction
    ARCHIVE_BATCH_WITHIN        seconds a batch waits to fill (default 0.2: the delay an event
                                may wait at a low rate; under load the records that arrive while
                                a batch is written make the next one, so batches grow with it)
    ARCHIVE_BATCHES_IN_FLIGHT   ARCHIVE_CONSUMER=batch: batches under way at once (default 2,
                                1 to 8): the next is read and parsed while one is written;
                                offsets are committed in order, each after its batch is written
    ARCHIVE_AGENT_CONCURRENCY   ARCHIVE_CONSUMER=faust only: batches written at once (default
                                1: one agent gathers the largest batches; several contend for
                                the same complaints' locks and split the batches;
                                AGENT_CONCURRENCY is not used here)
    ARCHIVE_STREAM_BUFFER       records fetched ahead while a batch is written (default 10000,
                                100 to 100000; faust's stream_buffer_maxsize; for the batch
                                consumer, about 1/4 KiB each of a partition's fetch size)
    ARCHIVE_RETENTION_YEARS     closed cases are deleted, with their events, SLA and notification
                                rows, this many years after they closed (default 10, 1 to 100)
    ARCHIVE_RETENTION_INTERVAL  seconds between retention runs (default 3600)
    SLA_MONITOR_CALENDAR_FILE   the business calendar handling times are counted on in the reports
                                (shared with the SLA monitor; default: the shipped calendar)
    ARCHIVE_RETENTION_TIMEOUT   seconds one retention run may take before it is cancelled and
                                the next run takes over (default 600)
    """

    database_url: SecretStr | None = Field(default=None, validation_alias="ARCHIVE_DATABASE_URL")
    calendar_file: Path | None = Field(default=None, validation_alias="SLA_MONITOR_CALENDAR_FILE")
    consumer: Literal["batch", "faust"] = Field(default="batch", validation_alias="ARCHIVE_CONSUMER")
    http_port: int = Field(default=8084, ge=1, le=65535, validation_alias="ARCHIVE_HTTP_PORT")
    batch_size: int = Field(default=20000, ge=1, le=100000, validation_alias="ARCHIVE_BATCH_SIZE")
    batch_within: float = Field(default=0.2, gt=0, le=10, validation_alias="ARCHIVE_BATCH_WITHIN")
    in_flight: int = Field(default=2, ge=1, le=8, validation_alias="ARCHIVE_BATCHES_IN_FLIGHT")
    concurrency: int = Field(default=1, ge=1, le=64, validation_alias="ARCHIVE_AGENT_CONCURRENCY")
    stream_buffer: int = Field(default=10000, ge=100, le=100000, validation_alias="ARCHIVE_STREAM_BUFFER")
    retention_years: int = Field(default=10, ge=1, le=100, validation_alias="ARCHIVE_RETENTION_YEARS")
    retention_interval: float = Field(default=3600.0, ge=1, le=7 * 86400,
                                      validation_alias="ARCHIVE_RETENTION_INTERVAL")
    retention_timeout: float = Field(default=600.0, ge=1, le=86400,
                                     validation_alias="ARCHIVE_RETENTION_TIMEOUT")

    def database(self) -> str:
        """The database URL in clear (for the engine only: never log it)."""
        return database_url(self.database_url, self.data_dir)


def database_url(given: SecretStr | None, data_dir: Path) -> str:
    """The archive's database URL in clear: ARCHIVE_DATABASE_URL, else the SQLite file under the
    data dir (for the archive's writer and the desk's reader alike; never log it)."""
    if given is not None:
        return given.get_secret_value()
    return f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}"
