"""Archive settings."""

from __future__ import annotations

from pathlib import Path

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
    ARCHIVE_BATCH_SIZE          records archived together, in one transaction (default 500)
    ARCHIVE_BATCH_WITHIN        seconds a batch waits to fill (default 0.05)
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
    http_port: int = Field(default=8084, ge=1, le=65535, validation_alias="ARCHIVE_HTTP_PORT")
    batch_size: int = Field(default=500, ge=1, le=5000, validation_alias="ARCHIVE_BATCH_SIZE")
    batch_within: float = Field(default=0.05, gt=0, le=10, validation_alias="ARCHIVE_BATCH_WITHIN")
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
