"""Intake settings."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from services.common.staff_tokens import StaffTokenSettings


class IntakeSettings(StaffTokenSettings):
    """Intake settings: the shared ones (see CommonSettings) and the staff token ones
    (StaffTokenSettings: DESK_JWT_SECRET, DESK_JWT_SECRET_FILE, DESK_JWKS, ...: GET
    /v1/complaints/{id} needs a staff token) plus

    INTAKE_HTTP_PORT       port of the HTTP API, /metrics and /healthz (default 8080)
    INTAKE_MAX_BODY_BYTES  largest accepted request or record body (default 1 MiB)
    INTAKE_IDENTITY_KEY    secret key of the customer identity hash; set it in production
    INTAKE_BATCH_SIZE      inbound records registered together from Kafka (default 200)
    INTAKE_BATCH_WITHIN    seconds a batch waits to fill (default 0.02)
    INTAKE_SIGNING_SECRETS JSON object channel -> HMAC secret ("*" for every channel), e.g.
                           {"web_form": "...", "*": "..."}; see services/intake/auth.py
    INTAKE_REQUIRE_SIGNATURES
                           refuse unsigned HTTP channel requests with 401 (default true)
    INTAKE_SIGNATURE_MAX_AGE
                           seconds a signed request stays valid (default 300)
    """

    http_port: int = Field(default=8080, ge=1, le=65535, validation_alias="INTAKE_HTTP_PORT")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=64 * 1_048_576, validation_alias="INTAKE_MAX_BODY_BYTES"
    )
    identity_key: SecretStr = Field(
        default=SecretStr("dev-only-identity-key"), min_length=8,
        validation_alias="INTAKE_IDENTITY_KEY",
    )
    batch_size: int = Field(default=200, ge=1, le=10_000, validation_alias="INTAKE_BATCH_SIZE")
    batch_within: float = Field(default=0.02, gt=0, le=10, validation_alias="INTAKE_BATCH_WITHIN")
    signing_secrets: dict[str, SecretStr] = Field(default_factory=dict,
                                                  validation_alias="INTAKE_SIGNING_SECRETS")
    require_signatures: bool = Field(default=True, validation_alias="INTAKE_REQUIRE_SIGNATURES")
    signature_max_age: float = Field(default=300.0, ge=1, le=86_400,
                                     validation_alias="INTAKE_SIGNATURE_MAX_AGE")

    @field_validator("signing_secrets")
    @classmethod
    def _known_channels(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        from schemas.events import Channel

        unknown = sorted(set(value) - set(Channel.__members__) - {"*"})
        if unknown:
            raise ValueError(f"unknown channels {unknown}")
        short = sorted(k for k, v in value.items() if len(v.get_secret_value()) < 16)
        if short:
            raise ValueError(f"secrets shorter than 16 characters for {short}")
        return value

    def secrets(self) -> dict[str, bytes]:
        """Signing secrets as bytes, by channel."""
        return {k: v.get_secret_value().encode() for k, v in self.signing_secrets.items()}
