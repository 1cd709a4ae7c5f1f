"""Client side of HTTP channel signatures (v2, services/intake/auth.py): find the secrets, sign
and post a payload. Every attempt is signed afresh (a new nonce): intake refuses a nonce twice."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.common.errors import ConfigError
from services.intake import auth

SECRETS_FILE = "signing-secrets.json"


def secrets_path(data_dir: Path) -> Path:
    """Where `complaints up` leaves the signing secrets of its run."""
    return data_dir / SECRETS_FILE


def write_secrets(data_dir: Path, raw: str) -> None:
    """Store the JSON secrets readable by the owner only."""
    path = secrets_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(raw)


def parse_secrets(raw: str) -> dict[str, dict[str, bytes]]:
    """Secrets by channel and key id from their JSON spelling (INTAKE_SIGNING_SECRETS)."""
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("signing secrets must be a JSON object of channel -> secret")
    return auth.keyring({str(k): {str(kid): str(s) for kid, s in v.items()} if isinstance(v, dict)
                         else str(v) for k, v in value.items()})


def load_secrets(data_dir: Path) -> dict[str, dict[str, bytes]]:
    """INTAKE_SIGNING_SECRETS from the environment, else the file `complaints up` wrote."""
    raw, where = os.environ.get("INTAKE_SIGNING_SECRETS"), "environment: INTAKE_SIGNING_SECRETS"
    if raw is None and secrets_path(data_dir).exists():
        raw, where = secrets_path(data_dir).read_text(encoding="utf-8"), str(secrets_path(data_dir))
    try:
        return parse_secrets(raw) if raw else {}
    except ValueError as exc:  # the problem, never the secrets themselves
        problem = (f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
                   if isinstance(exc, json.JSONDecodeError) else
                   "expected a JSON object of channel -> secret or {key id: secret}")
        raise ConfigError(f"{where}: {problem}") from None


def sign_request(url: str, channel: str, body: bytes, *, content_type: str,
                 secrets: Mapping[str, bytes | Mapping[str, bytes]], now: float) -> dict[str, str]:
    """v2 headers for POSTing ``body`` to ``url`` with the channel's current key (none if the
    channel has no secret)."""
    key = auth.current_key(channel, auth.keyring(secrets))
    if key is None:
        return {}
    key_id, secret = key
    return auth.sign(secret, body, key_id=key_id, method="POST", path=urllib.parse.urlsplit(url).path,
                     channel=channel, content_type=content_type, now=now)


def signed_post(url: str, channel: str, body: bytes, *, content_type: str,
                secrets: Mapping[str, bytes | Mapping[str, bytes]],
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST ``body`` signed (v2) with the channel's current key; return (status, parsed answer)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    all_headers = {"Content-Type": content_type, **(headers or {}),
                   **sign_request(url, channel, body, content_type=content_type, secrets=secrets,
                                  now=time.time())}
    request = urllib.request.Request(url, data=body, method="POST", headers=all_headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - operator's URL
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


CONTENT_TYPES = {".json": "application/json", ".eml": "message/rfc822", ".xml": "application/xml",
                 ".txt": "text/plain"}


def post_file(base_url: str, channel: str, path: Path, *, data_dir: Path) -> tuple[int, Any]:
    """Post one example or export file to intake's channel endpoint, signed."""
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return signed_post(f"{base_url.rstrip('/')}/v1/inbound/{channel}", channel, path.read_bytes(),
                       content_type=content_type, secrets=load_secrets(data_dir))
