"""How staff bearer tokens are verified: the settings every service with a staff endpoint shares
(the desk, intake's case read, the archive's report API). ``services.desk.auth`` verifies with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from services.common.errors import ConfigError
from services.common.settings import CommonSettings

SECRET_FILE = "desk-jwt-secret"  # noqa: S105 - a file name, not a secret
MIN_SECRET = 32


class StaffTokenSettings(CommonSettings):
    """Staff token settings: the shared ones (see CommonSettings) plus

    DESK_JWT_SECRET         HS256 secret of staff tokens, at least 32 characters (embedded stack);
                            default: the file COMPLAINTS_DATA_DIR/desk-jwt-secret that
                            `complaints up` writes (mode 0600)
    DESK_JWT_SECRET_FILE    a file holding the HS256 secret instead
    DESK_JWKS               RS256 / ES256 keys of an identity provider: a JWKS file path or an
                            https:// URL (deployments); when set, HS256 tokens are refused
    DESK_JWT_ISSUER         the `iss` every token must carry (checked when set)
    DESK_JWT_AUDIENCE       the `aud` every token must carry (checked when set)
    DESK_JWT_LEEWAY         seconds of clock skew allowed on `exp` (default 30)
    """

    jwt_secret: SecretStr | None = Field(default=None, validation_alias="DESK_JWT_SECRET")
    jwt_secret_file: Path | None = Field(default=None, validation_alias="DESK_JWT_SECRET_FILE")
    jwks: str | None = Field(default=None, min_length=1, validation_alias="DESK_JWKS")
    jwt_issuer: str | None = Field(default=None, min_length=1, validation_alias="DESK_JWT_ISSUER")
    jwt_audience: str | None = Field(default=None, min_length=1, validation_alias="DESK_JWT_AUDIENCE")
    jwt_leeway: float = Field(default=30.0, ge=0, le=600, validation_alias="DESK_JWT_LEEWAY")

    def key_mode(self) -> Literal["hs256", "jwks"]:
        """Which kind of key verifies tokens; the choice is checked (ConfigError names the field)."""
        if self.jwks is not None:
            if self.jwt_secret is not None or self.jwt_secret_file is not None:
                raise ConfigError("environment: DESK_JWKS: set either DESK_JWKS or an HS256 secret "
                                  "(DESK_JWT_SECRET / DESK_JWT_SECRET_FILE), not both")
            if self.jwks.startswith("http://"):
                raise ConfigError("environment: DESK_JWKS: a JWKS URL must be https://")
            if not self.jwks.startswith("https://") and not Path(self.jwks).is_file():
                raise ConfigError(f"environment: DESK_JWKS: no such file {self.jwks}")
            return "jwks"
        return "hs256"

    def hs256_secret(self) -> bytes:
        """The HS256 secret: DESK_JWT_SECRET, DESK_JWT_SECRET_FILE or the data dir's file.

        Errors name the variable or file and the problem, never the value.
        """
        if self.jwt_secret is not None and self.jwt_secret_file is not None:
            raise ConfigError("environment: DESK_JWT_SECRET: set DESK_JWT_SECRET or "
                              "DESK_JWT_SECRET_FILE, not both")
        if self.jwt_secret is not None:
            where, raw = "environment: DESK_JWT_SECRET", self.jwt_secret.get_secret_value()
        else:
            path = self.jwt_secret_file or self.data_dir / SECRET_FILE
            variable = "DESK_JWT_SECRET_FILE" if self.jwt_secret_file else "DESK_JWT_SECRET"
            try:
                raw = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read the staff token secret ({exc.strerror}); set "
                                  f"{variable}, or run `complaints up` once to create it") from None
            where = str(path)
        if len(raw) < MIN_SECRET:
            raise ConfigError(f"{where}: the staff token secret is shorter than {MIN_SECRET} characters")
        return raw.encode()
