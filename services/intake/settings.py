"""Intake settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from services.common import privacy
from services.common.privacy import MIN_IDENTITY_KEY
from services.common.staff_tokens import StaffTokenSettings


class IntakeSettings(StaffTokenSettings):
    """Intake settings: the shared ones (see CommonSettings) and the staff token ones
    (StaffTokenSettings: DESK_JWT_SECRET, DESK_JWT_SECRET_FILE, DESK_JWKS, ...: GET
    /v1/complaints/{id} needs a staff token) plus

    INTAKE_HTTP_PORT       port of the HTTP API, /metrics and /healthz (default 8080)
    INTAKE_MAX_BODY_BYTES  largest accepted request or record body (default 1 MiB)
    INTAKE_IDENTITY_KEY    secret key of the customer identity hash, at least 16 characters, the
                           same as the desk's; no default: unset, the file identity-key under
                           COMPLAINTS_DATA_DIR (`complaints up` writes it, mode 0600), else intake
                           refuses to start
    PII_MASTER_KEYS        kid:base64[,kid:base64...] of 32-byte master keys that wrap the
                           customers' data keys (docs/privacy.md); the first wraps, all unwrap;
                           the same for intake, the notifier and the desk; no default: unset, the
                           file pii-master-keys under COMPLAINTS_DATA_DIR (`complaints up` writes
                           it, mode 0600), else intake refuses to start
    PII_KEY_CACHE_TTL      seconds an unwrapped data key stays in memory (default 60)
    INTAKE_BATCH_SIZE      inbound records registered together from Kafka (default 200)
    INTAKE_BATCH_WITHIN    seconds a batch waits to fill (default 0.02)
    INTAKE_SIGNING_SECRETS JSON object channel ("*" for every channel without its own) -> an
                           HMAC secret (key id "default") or an object key id -> secret, e.g.
                           {"web_form": {"2026-11": "...", "2026-12": "..."}, "*": "..."}; a
                           request names its key id, so a secret is rotated by adding a key id;
                           signers use the last one listed. See services/intake/auth.py
    INTAKE_REQUIRE_SIGNATURES
                           refuse unsigned HTTP channel requests with 401 (default true)
    INTAKE_SIGNATURE_MAX_AGE
                           seconds a signed request stays valid (default 300); its nonce is
                           remembered in Redis as long (plus the skew)
    INTAKE_SIGNATURE_MAX_SKEW
                           seconds a request's timestamp may be ahead of intake's clock (default 30)
    INTAKE_SIGNING_V1      accept | reject (default reject): whether v1 signatures (no nonce, key id,
                           method, path or content type signed) still pass, for integrations that
                           have not moved to v2 yet
    """

    http_port: int = Field(default=8080, ge=1, le=65535, validation_alias="INTAKE_HTTP_PORT")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=64 * 1_048_576, validation_alias="INTAKE_MAX_BODY_BYTES"
    )
    identity_key: SecretStr | None = Field(default=None, min_length=MIN_IDENTITY_KEY,
                                           validation_alias="INTAKE_IDENTITY_KEY")
    pii_master_keys: SecretStr | None = Field(default=None, validation_alias="PII_MASTER_KEYS")
    pii_key_cache_ttl: float = Field(default=60.0, gt=0, le=3600, validation_alias="PII_KEY_CACHE_TTL")
    batch_size: int = Field(default=200, ge=1, le=10_000, validation_alias="INTAKE_BATCH_SIZE")
    batch_within: float = Field(default=0.02, gt=0, le=10, validation_alias="INTAKE_BATCH_WITHIN")
    signing_secrets: dict[str, SecretStr | dict[str, SecretStr]] = Field(
        default_factory=dict, validation_alias="INTAKE_SIGNING_SECRETS")
    require_signatures: bool = Field(default=True, validation_alias="INTAKE_REQUIRE_SIGNATURES")
    signature_max_age: float = Field(default=300.0, ge=1, le=86_400,
                                     validation_alias="INTAKE_SIGNATURE_MAX_AGE")
    signature_max_skew: float = Field(default=30.0, ge=0, le=300,
                                      validation_alias="INTAKE_SIGNATURE_MAX_SKEW")
    signing_v1: Literal["accept", "reject"] = Field(default="reject", validation_alias="INTAKE_SIGNING_V1")

    @field_validator("signing_secrets")
    @classmethod
    def _known_channels(cls, value: dict[str, SecretStr | dict[str, SecretStr]],
                        ) -> dict[str, SecretStr | dict[str, SecretStr]]:
        from schemas.events import Channel
        from services.intake.auth import KEY_ID

        unknown = sorted(set(value) - set(Channel.__members__) - {"*"})
        if unknown:
            raise ValueError(f"unknown channels {unknown}")
        keys = {k: v if isinstance(v, dict) else {"default": v} for k, v in value.items()}
        empty = sorted(k for k, v in keys.items() if not v)
        if empty:
            raise ValueError(f"no key ids for {empty}")
        bad = sorted(f"{k}.{kid}" for k, v in keys.items() for kid in v if not KEY_ID.match(kid))
        if bad:
            raise ValueError(f"key ids must be 1-64 of A-Z a-z 0-9 . _ -: {bad}")
        short = sorted(f"{k}.{kid}" for k, v in keys.items() for kid, s in v.items()
                       if len(s.get_secret_value()) < 16)
        if short:
            raise ValueError(f"secrets shorter than 16 characters for {short}")
        return value

    def identity_secret(self) -> bytes:
        """The identity key (services.common.privacy.identity_key): ConfigError when unset."""
        return privacy.identity_key(self.identity_key, self.data_dir)

    def keyring(self) -> dict[str, dict[str, bytes]]:
        """Signing secrets as bytes, by channel and key id (services.intake.auth.Keyring)."""
        return {channel: {kid: s.get_secret_value().encode() for kid, s in keys.items()}
                if isinstance(keys, dict) else {"default": keys.get_secret_value().encode()}
                for channel, keys in self.signing_secrets.items()}
