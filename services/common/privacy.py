"""Personal data shown to people who need only a hint of it (masked contact addresses), and the
key of the customer identity hash."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from services.common.errors import ConfigError

WECHAT_MASKED = "wechat:***"
"""The masked form of a WeChat customer's openid: that they are reachable by WeChat, no character
of the openid (it is sealed, and nobody reads a hint of it: a customer never sees their openid)."""


def mask(address: str) -> str:
    """Hide most of an address: a***@example.com, +86*******8000."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return address[:3] + "*" * max(len(address) - 7, 0) + address[-4:] if len(address) > 7 else "***"


# ---- the customer identity key ----------------------------------------------------------------
# Intake keys every customer's phone / e-mail / account with HMAC-SHA256 under this key (the
# repeat-complaint link, the desk's customer search). A key everybody knows would make the hash
# reversible by trying every phone number, so there is no default: INTAKE_IDENTITY_KEY, or the
# file `complaints up` writes under the data dir (mode 0600).

IDENTITY_KEY_FILE = "identity-key"
MIN_IDENTITY_KEY = 16


def identity_key_path(data_dir: Path) -> Path:
    """Where `complaints up` keeps the identity key of its data dir."""
    return data_dir / IDENTITY_KEY_FILE


def ensure_secret_file(path: Path, nbytes: int = 32, *, make: Callable[[], str] | None = None) -> Path:
    """Create ``path`` holding a random secret of ``nbytes`` bytes, or what ``make`` returns
    (mode 0600, never replaced once there: two starting processes cannot both write it);
    return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(make() if make is not None else secrets.token_urlsafe(nbytes))
    return path


def ensure_identity_key(data_dir: Path) -> Path:
    """Create a random identity key file (mode 0600) unless one exists; return its path."""
    return ensure_secret_file(identity_key_path(data_dir), 32)


def identity_key(given: SecretStr | None, data_dir: Path) -> bytes:
    """The identity key: INTAKE_IDENTITY_KEY, else the data dir's file; ConfigError when neither
    is there (the message names the variable and the file, never a value)."""
    if given is not None:
        return given.get_secret_value().encode()
    path = identity_key_path(data_dir)
    try:
        raw = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            "environment: INTAKE_IDENTITY_KEY: not set: the secret key of the customer identity "
            f"hash has no default (a known key makes the hash of a phone number reversible); set "
            f"it to a random value of at least {MIN_IDENTITY_KEY} characters, the same for intake "
            f"and the desk (`complaints up` writes one to {path})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the identity key ({exc.strerror})") from None
    if len(raw) < MIN_IDENTITY_KEY:
        raise ConfigError(f"{path}: the identity key is shorter than {MIN_IDENTITY_KEY} characters")
    return raw.encode()
