"""Notifier settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import CommonSettings


class NotifierSettings(CommonSettings):
    """Notifier settings: the shared ones (see CommonSettings) plus

    NOTIFIER_HTTP_PORT        port of /metrics and /healthz (default 8083)
    NOTIFIER_OUTBOX_DIR       directory of the file outbox transport (default .complaints/outbox)
    NOTIFIER_CONTACT_TTL_DAYS how long a complaint's contact details are kept (default 120)
    NOTIFIER_MISSING_CONTACT_RETRIES
                              times a result waits for its complaint's registration to arrive
                              before it is dead-lettered (default 20, 0.5 s apart)
    """

    http_port: int = Field(default=8083, ge=1, le=65535, validation_alias="NOTIFIER_HTTP_PORT")
    outbox_dir: Path = Field(default=Path(".complaints/outbox"), validation_alias="NOTIFIER_OUTBOX_DIR")
    contact_ttl_days: int = Field(default=120, ge=1, le=3650,
                                  validation_alias="NOTIFIER_CONTACT_TTL_DAYS")
    missing_contact_retries: int = Field(default=20, ge=0, le=1000,
                                         validation_alias="NOTIFIER_MISSING_CONTACT_RETRIES")
