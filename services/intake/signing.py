"""Client side of HTTP channel signatures: find the secrets, sign and post a payload."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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


def parse_secrets(raw: str) -> dict[str, bytes]:
    """Secrets by channel from their JSON spelling."""
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("signing secrets must be a JSON object of channel -> secret")
    return {str(k): str(v).encode() for k, v in value.items()}


def load_secrets(data_dir: Path) -> dict[str, bytes]:
    """INTAKE_SIGNING_SECRETS from the environment, else the file `complaints up` wrote."""
    raw = os.environ.get("INTAKE_SIGNING_SECRETS")
    if raw is None and secrets_path(data_dir).exists():
        raw = secrets_path(data_dir).read_text(encoding="utf-8")
    return parse_secrets(raw) if raw else {}


def signed_post(url: str, channel: str, body: bytes, *, content_type: str,
                secrets: dict[str, bytes], headers: dict[str, str] | None = None,
                ) -> tuple[int, Any]:
    """POST ``body`` signed with the channel's secret; return (status, parsed answer)."""
    all_headers = {"Content-Type": content_type, **(headers or {})}
    secret = auth.secret_for(channel, secrets)
    if secret is not None:
        all_headers.update(auth.sign(secret, body, now=time.time()))
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
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
