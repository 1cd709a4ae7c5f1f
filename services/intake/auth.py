"""HMAC-SHA256 request signatures for HTTP channels. No I/O.

A caller signs ``f"{timestamp}.".encode() + body`` with the channel's secret and
sends ``X-Complaints-Timestamp: <unix seconds>`` and
``X-Complaints-Signature: sha256=<hex digest>``. Requests older (or newer) than
the configured window are refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Complaints-Timestamp"
SIGNATURE_HEADER = "X-Complaints-Signature"


class Unauthorized(Exception):
    """The request is not signed, or not signed right; the message says which."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, *, now: float) -> dict[str, str]:
    """Headers that sign ``body`` at time ``now``."""
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def secret_for(channel: str, secrets: Mapping[str, bytes]) -> bytes | None:
    """The channel's own secret, else the catch-all '*' secret."""
    return secrets.get(channel) or secrets.get("*")


def verify(secret: bytes | None, headers: Mapping[str, str], body: bytes, *, now: float,
           max_age: float) -> None:
    """Raise Unauthorized unless the headers sign ``body`` within ``max_age`` seconds of ``now``."""
    if secret is None:
        raise Unauthorized("no signing secret is configured for this channel")
    timestamp, given = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    if not timestamp or not given:
        raise Unauthorized(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise Unauthorized(f"{TIMESTAMP_HEADER} is not a unix time") from None
    if abs(now - sent) > max_age:
        raise Unauthorized(f"request time is outside the {max_age:.0f} s window")
    if not hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode()):
        raise Unauthorized("signature does not match")
