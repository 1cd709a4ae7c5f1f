"""Desk settings: the staff listener, the archive it reads, how staff tokens are verified."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, model_validator

from services.common import privacy
from services.common.privacy import MIN_IDENTITY_KEY
from services.common.staff_tokens import MIN_SECRET, SECRET_FILE, StaffTokenSettings

if TYPE_CHECKING:
    from services.common.sealing import MasterKeys

__all__ = ["MIN_SECRET", "SECRET_FILE", "DeskSettings"]


class DeskSettings(StaffTokenSettings):
    """Desk settings: the shared ones (see CommonSettings, StaffTokenSettings) plus

    DESK_HTTP_PORT          port of the staff API, /metrics and /healthz (default 8085); separate
                            from intake's channel listener, so each can be exposed on its own
    ARCHIVE_DATABASE_URL    the archive's database, read only (default: the archive's SQLite file
                            under COMPLAINTS_DATA_DIR); may hold a password: never printed
    DESK_JWT_*, DESK_JWKS   how staff tokens are verified: see StaffTokenSettings
    INTAKE_IDENTITY_KEY     the customer identity key (intake's): customer search computes the
                            same keyed hash of a phone or e-mail; no default (unset: the file
                            identity-key under COMPLAINTS_DATA_DIR, else the desk refuses to start)
    PII_MASTER_KEYS         the master key(s) wrapping the customers' data keys, as intake's
                            (docs/privacy.md): GET /v1/desk/cases/{id}/contact opens a case's
                            contact for a person who may record a contact on it; unset (and no
                            file pii-master-keys under COMPLAINTS_DATA_DIR) that endpoint answers
                            501, a malformed value stops the start
    PII_KEY_CACHE_TTL       seconds an unwrapped data key stays in memory (default 60)
    DESK_PAGE_SIZE          default page size of the work lists (default 50)
    DESK_MAX_PAGE_SIZE      largest `limit` accepted (default 200)
    DESK_MAX_BODY_BYTES     largest action body accepted (default 64 KiB)
    DESK_COOKIE_SECURE      mark the console's session cookie Secure (true behind https; default false)
    SLA_MONITOR_CALENDAR_FILE  the business calendar of the console's monthly report (default: shipped)
    """

    http_port: int = Field(default=8085, ge=1, le=65535, validation_alias="DESK_HTTP_PORT")
    database_url: SecretStr | None = Field(default=None, validation_alias="ARCHIVE_DATABASE_URL")
    identity_key: SecretStr | None = Field(default=None, min_length=MIN_IDENTITY_KEY,
                                           validation_alias="INTAKE_IDENTITY_KEY")
    pii_master_keys: SecretStr | None = Field(default=None, validation_alias="PII_MASTER_KEYS")
    pii_key_cache_ttl: float = Field(default=60.0, gt=0, le=3600, validation_alias="PII_KEY_CACHE_TTL")
    page_size: int = Field(default=50, ge=1, le=1000, validation_alias="DESK_PAGE_SIZE")
    max_page_size: int = Field(default=200, ge=1, le=1000, validation_alias="DESK_MAX_PAGE_SIZE")
    max_body_bytes: int = Field(default=65_536, ge=1024, le=4 * 1_048_576,
                                validation_alias="DESK_MAX_BODY_BYTES")
    cookie_secure: bool = Field(default=False, validation_alias="DESK_COOKIE_SECURE")
    calendar_file: Path | None = Field(default=None, validation_alias="SLA_MONITOR_CALENDAR_FILE")

    @model_validator(mode="after")
    def _page_sizes(self) -> DeskSettings:
        if self.page_size > self.max_page_size:
            raise ValueError(f"DESK_PAGE_SIZE ({self.page_size}) is above DESK_MAX_PAGE_SIZE "
                             f"({self.max_page_size})")
        return self

    def identity_secret(self) -> bytes:
        """The identity key (services.common.privacy.identity_key): ConfigError when unset."""
        return privacy.identity_key(self.identity_key, self.data_dir)

    def master_keys(self) -> MasterKeys | None:
        """The master keys, or None when none is configured (ConfigError when malformed)."""
        from services.common.sealing import master_keys_of, master_keys_path

        unset = self.pii_master_keys is None or not self.pii_master_keys.get_secret_value().strip()
        if unset and not master_keys_path(self.data_dir).exists():
            return None
        return master_keys_of(self.pii_master_keys, self.data_dir)

    def database(self) -> str:
        """The archive's database URL in clear (for the engine only: never log it)."""
        from services.archive.settings import database_url

        return database_url(self.database_url, self.data_dir)
