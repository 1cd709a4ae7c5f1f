"""Staff identity: bearer JWTs verified (HS256 secret, or RS256 / ES256 keys of a JWKS file or
URL), minted for the embedded stack, and the secret file `complaints up` writes.

A token carries ``sub`` (the staff id: every event's actor), ``roles`` (a list), ``department``
(null for staff of no department) and ``exp``; ``iss`` and ``aud`` are checked when configured.
A token never reaches a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt

from services.common.privacy import ensure_secret_file
from services.common.staff_tokens import SECRET_FILE, StaffTokenSettings

HS_ALGORITHMS = ["HS256"]
ASYMMETRIC_ALGORITHMS = ["RS256", "ES256"]
REQUIRED_CLAIMS = ["sub", "roles", "exp"]  # and "department", which may be null
RESERVED_SUBJECTS = frozenset({"customer"})  # the archive reads a 'customer' actor as the customer


class KeysUnavailable(ConnectionError):
    """The identity provider's key set could not be fetched: try again (503), not the token's fault."""


class Unauthorized(Exception):
    """No usable token: missing, malformed, badly signed, expired or lacking a claim."""


@dataclass(frozen=True)
class Identity:
    """Who is calling, from a verified token."""

    sub: str
    roles: tuple[str, ...]
    department: str | None


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header."""
    if not header:
        raise Unauthorized("no bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header is not a bearer token")
    return token.strip()


def identity(claims: dict[str, Any]) -> Identity:
    """The identity a token's verified claims name; malformed claims are Unauthorized."""
    sub, roles, department = claims.get("sub"), claims.get("roles"), claims.get("department")
    if "department" not in claims:
        raise Unauthorized("the token has no department claim (null for none)")
    if not isinstance(sub, str) or not sub.strip() or len(sub) > 200 or sub in RESERVED_SUBJECTS:
        raise Unauthorized("the token's sub is not a staff id")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("the token's roles are not a list of names")
    if department is not None and (not isinstance(department, str) or not department.strip()):
        raise Unauthorized("the token's department is not a name")
    return Identity(sub=sub, roles=tuple(roles), department=department)


class TokenVerifier:
    """Verifies staff tokens with the configured keys (blocking for a JWKS URL: run in a thread)."""

    def __init__(self, *, secret: bytes | None = None, jwks: str | None = None,
                 issuer: str | None = None, audience: str | None = None, leeway: float = 30.0) -> None:
        if (secret is None) == (jwks is None):
            raise ValueError("give an HS256 secret or a JWKS source, one of them")
        self._secret = secret
        remote = jwks is not None and jwks.startswith("https://")
        self._client = jwt.PyJWKClient(jwks, cache_keys=True) if jwks and remote else None
        self._keys = jwt.PyJWKSet.from_json(Path(jwks).read_text(encoding="utf-8")) \
            if jwks and not remote else None
        self._issuer, self._audience, self._leeway = issuer, audience, leeway

    @classmethod
    def from_settings(cls, settings: StaffTokenSettings) -> TokenVerifier:
        """The verifier the settings describe (their errors name the variable, never a value)."""
        common = {"issuer": settings.jwt_issuer, "audience": settings.jwt_audience,
                  "leeway": settings.jwt_leeway}
        if settings.key_mode() == "jwks":
            return cls(jwks=settings.jwks, **common)  # type: ignore[arg-type]
        return cls(secret=settings.hs256_secret(), **common)  # type: ignore[arg-type]

    def _key(self, token: str) -> tuple[Any, list[str]]:
        if self._secret is not None:
            return self._secret, HS_ALGORITHMS
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key, ASYMMETRIC_ALGORITHMS
        assert self._keys is not None
        kid = jwt.get_unverified_header(token).get("kid")
        keys = [k for k in self._keys.keys if kid is None or k.key_id == kid]
        if len(keys) != 1:
            raise Unauthorized("no key of the key set matches the token's kid")
        return keys[0].key, ASYMMETRIC_ALGORITHMS

    def verify(self, token: str) -> Identity:
        """The identity of a valid token; Unauthorized with the reason otherwise."""
        try:
            key, algorithms = self._key(token)
            claims = jwt.decode(token, key, algorithms=algorithms, issuer=self._issuer,
                                audience=self._audience, leeway=self._leeway,
                                options={"require": REQUIRED_CLAIMS})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWKClientConnectionError:
            raise KeysUnavailable("the identity provider's key set could not be fetched") from None
        except jwt.PyJWKClientError:
            raise Unauthorized("the token's key is not in the identity provider's key set") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        return identity(claims)


def mint(secret: bytes, *, sub: str, roles: list[str], department: str | None, ttl: timedelta,
         now: float, issuer: str | None = None, audience: str | None = None) -> str:
    """An HS256 staff token (embedded stack, tests)."""
    claims: dict[str, Any] = {"sub": sub, "roles": roles, "department": department,
                              "iat": int(now), "exp": int(now + ttl.total_seconds())}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def secret_path(data_dir: Path) -> Path:
    """Where `complaints up` keeps the staff token secret of its stack."""
    return data_dir / SECRET_FILE


def ensure_secret(data_dir: Path) -> Path:
    """Create the HS256 secret file (mode 0600) unless it exists; return its path."""
    return ensure_secret_file(secret_path(data_dir), 48)
