"""HMAC-SHA256 request signatures for HTTP channels. No I/O (the nonce store is a port).

Version 2 (what every signer sends). The caller picks a fresh random nonce and signs, with the
secret of a key id of the channel, the canonical string (lines joined by ``\\n``, UTF-8)::

    complaints-v2
    <method, upper case>             POST
    <path>                           /v1/inbound/web_form
    <channel>                        web_form
    <timestamp: unix seconds>        1795000000
    <nonce>                          16-128 of A-Z a-z 0-9 _ -
    <key id>                         1-64 of A-Z a-z 0-9 . _ -
    <content type, trimmed, lower>   application/json
    <hex SHA-256 of the body>

and sends ``X-Complaints-Timestamp``, ``X-Complaints-Nonce``, ``X-Complaints-Key-Id`` and
``X-Complaints-Signature: v2=<hex HMAC-SHA256>``. Intake refuses (401) a request older than the
window (INTAKE_SIGNATURE_MAX_AGE), more than a little ahead of its clock
(INTAKE_SIGNATURE_MAX_SKEW), or whose nonce it has seen within the window (remembered in Redis
with ``SET NX EX``), so a captured request can neither be replayed nor moved to another
channel, path or content type. Secrets have key ids, so a channel's secret is rotated by adding
a key, moving the signers to it and removing the old one.

Version 1 (``X-Complaints-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``) is
verified only while INTAKE_SIGNING_V1=accept (a migration period); a v1 signature is remembered
like a nonce, so a byte-identical resend within the window is refused as a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

TIMESTAMP_HEADER = "X-Complaints-Timestamp"
SIGNATURE_HEADER = "X-Complaints-Signature"
NONCE_HEADER = "X-Complaints-Nonce"
KEY_ID_HEADER = "X-Complaints-Key-Id"
V2_PREFIX = "v2="
V1_PREFIX = "sha256="
DEFAULT_KEY_ID = "default"  # the key id of a secret given without one
KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")

Keyring = Mapping[str, Mapping[str, bytes]]
"""Secrets by channel (or ``*`` for every channel without its own), then by key id."""


class Unauthorized(Exception):
    """The request is not signed, or not signed right; the message says which."""


class Nonces(Protocol):
    """Remembers what was seen for the signature window (Redis: ``SET NX EX``)."""

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        """True the first time ``key`` is offered within ``ttl_seconds``, False after."""
        ...


@dataclass(frozen=True)
class Verified:
    """A request whose signature holds: the version, the key id and what marks it used."""

    version: Literal[1, 2]
    key_id: str
    replay_key: str


def keyring(raw: Mapping[str, bytes | str | Mapping[str, bytes | str]]) -> dict[str, dict[str, bytes]]:
    """Secrets by channel and key id from their configured spelling: a channel's value is a
    secret (key id ``default``) or an object of key id -> secret."""
    ring: dict[str, dict[str, bytes]] = {}
    for channel, value in raw.items():
        keys = value if isinstance(value, Mapping) else {DEFAULT_KEY_ID: value}
        ring[channel] = {kid: s if isinstance(s, bytes) else s.encode() for kid, s in keys.items()}
    return ring


def keys_for(channel: str, ring: Keyring) -> Mapping[str, bytes]:
    """The channel's own keys, else the catch-all ``*`` keys (empty when neither)."""
    return ring.get(channel) or ring.get("*") or {}


def current_key(channel: str, ring: Keyring) -> tuple[str, bytes] | None:
    """The key a signer uses: the channel's (else ``*``'s) last listed key id and its secret."""
    keys = keys_for(channel, ring)
    if not keys:
        return None
    kid = list(keys)[-1]
    return kid, keys[kid]


def canonical(*, method: str, path: str, channel: str, timestamp: str, nonce: str, key_id: str,
              content_type: str, body: bytes) -> bytes:
    """The v2 string to sign."""
    return "\n".join(("complaints-v2", method.upper(), path, channel, timestamp, nonce, key_id,
                      content_type.strip().lower(), hashlib.sha256(body).hexdigest())).encode()


def signature_v2(secret: bytes, message: bytes) -> str:
    """The v2 signature header value of a canonical string."""
    return V2_PREFIX + hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, *, key_id: str, method: str, path: str, channel: str,
         content_type: str, now: float, nonce: str | None = None) -> dict[str, str]:
    """v2 headers that sign a request sent at ``now`` (a fresh random nonce unless given)."""
    timestamp, nonce = str(int(now)), nonce or random.token_urlsafe(18)
    message = canonical(method=method, path=path, channel=channel, timestamp=timestamp, nonce=nonce,
                        key_id=key_id, content_type=content_type, body=body)
    return {TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce, KEY_ID_HEADER: key_id,
            SIGNATURE_HEADER: signature_v2(secret, message)}


def signature_v1(secret: bytes, timestamp: str, body: bytes) -> str:
    """The v1 signature header value of a body sent at ``timestamp`` (migration only)."""
    return V1_PREFIX + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_v1(secret: bytes, body: bytes, *, now: float) -> dict[str, str]:
    """v1 headers (an integration not yet moved to v2)."""
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature_v1(secret, timestamp, body)}


def verify(ring: Keyring, headers: Mapping[str, str], body: bytes, *, channel: str, method: str,
           path: str, now: float, max_age: float, max_skew: float,
           v1: Literal["accept", "reject"] = "reject") -> Verified:
    """Check a request's signature and time; raise Unauthorized with the reason unless it holds.

    The caller then offers ``replay_key`` to the nonce store (``SignatureCheck`` does both).
    """
    keys = keys_for(channel, ring)
    if not keys:
        raise Unauthorized("no signing secret is configured for this channel")
    timestamp, given = headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    if not timestamp or not given:
        raise Unauthorized(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise Unauthorized(f"{TIMESTAMP_HEADER} is not a unix time") from None
    if sent > now + max_skew:
        raise Unauthorized(f"request time is more than {max_skew:.0f} s ahead of intake's clock")
    if now - sent > max_age:
        raise Unauthorized(f"request time is outside the {max_age:.0f} s window")
    if given.startswith(V1_PREFIX):
        return _verify_v1(keys, timestamp, given, body, channel=channel, v1=v1)
    if not given.startswith(V2_PREFIX):
        raise Unauthorized(f"{SIGNATURE_HEADER} is neither v2=<hex> nor sha256=<hex>")
    key_id, nonce = headers.get(KEY_ID_HEADER) or "", headers.get(NONCE_HEADER) or ""
    if not KEY_ID.match(key_id):
        raise Unauthorized(f"missing or malformed {KEY_ID_HEADER} header")
    if not NONCE.match(nonce):
        raise Unauthorized(f"missing or malformed {NONCE_HEADER} header (16-128 of A-Z a-z 0-9 _ -)")
    secret = keys.get(key_id)
    if secret is None:
        raise Unauthorized(f"unknown key id {key_id!r} for this channel")
    message = canonical(method=method, path=path, channel=channel, timestamp=timestamp, nonce=nonce,
                        key_id=key_id, content_type=headers.get("Content-Type", ""), body=body)
    if not hmac.compare_digest(signature_v2(secret, message).encode(), given.encode()):
        raise Unauthorized("signature does not match")
    return Verified(2, key_id, f"{channel}:{key_id}:{nonce}")


def _verify_v1(keys: Mapping[str, bytes], timestamp: str, given: str, body: bytes, *,
               channel: str, v1: Literal["accept", "reject"]) -> Verified:
    if v1 != "accept":
        raise Unauthorized("v1 signatures are no longer accepted: sign with v2 "
                           "(X-Complaints-Signature: v2=..., with a nonce and a key id)")
    for key_id, secret in keys.items():
        if hmac.compare_digest(signature_v1(secret, timestamp, body).encode(), given.encode()):
            return Verified(1, key_id, f"{channel}:{key_id}:v1:{given.removeprefix(V1_PREFIX)}")
    raise Unauthorized("signature does not match")


class SignatureCheck:
    """Intake's check of a channel request: the signature (``verify``), then its nonce, which
    must be new within the window. A nonce store that does not answer raises its own error
    (transient: the caller answers 503, never 401)."""

    def __init__(self, ring: Keyring, *, nonces: Nonces, max_age: float, max_skew: float,
                 v1: Literal["accept", "reject"]) -> None:
        self.ring, self.nonces = ring, nonces
        self.max_age, self.max_skew, self.v1 = max_age, max_skew, v1
        self.remember_for = int(max_age + max_skew) + 1  # a nonce outlives its timestamp's window

    async def check(self, headers: Mapping[str, str], body: bytes, *, channel: str, method: str,
                    path: str, now: float) -> Verified:
        """Verify the request and mark its nonce used; Unauthorized with the reason if not."""
        verified = verify(self.ring, headers, body, channel=channel, method=method, path=path,
                          now=now, max_age=self.max_age, max_skew=self.max_skew, v1=self.v1)
        if not await self.nonces.first_use(verified.replay_key, self.remember_for):
            raise Unauthorized("replayed request: this signature's nonce was already used "
                               "(sign every attempt afresh; the Idempotency-Key de-duplicates)")
        return verified
