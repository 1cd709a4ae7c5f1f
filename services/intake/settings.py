"""Intake settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.settings import CommonSettings


class IntakeSettings(CommonSettings):
    """Intake settings: the shared ones (see CommonSettings) plus

    INTAKE_HTTP_PORT       port of the HTTP API, /metrics and /healthz (default 8080)
    INTAKE_MAX_BODY_BYTES  largest accepted request or record body (default 1 MiB)
    INTAKE_IDENTITY_KEY    secret key of the customer identity hash; set it in production
    """

    http_port: int = Field(default=8080, ge=1, le=65535, validation_alias="INTAKE_HTTP_PORT")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=64 * 1_048_576, validation_alias="INTAKE_MAX_BODY_BYTES"
    )
    identity_key: SecretStr = Field(
        default=SecretStr("dev-only-identity-key"), min_length=8,
        validation_alias="INTAKE_IDENTITY_KEY",
    )
