"""Field-level envelope encryption of personal data (docs/privacy.md). Pure: no I/O but the key file.

- A master key (key-encryption key, KEK) comes from configuration: PII_MASTER_KEYS, a comma-separated
  list of ``kid:base64`` entries of 32-byte keys; the first one wraps new data keys, every one listed
  unwraps (rotation: put the new key first, keep the old ones until every data key is re-wrapped).
  Unset, the file ``pii-master-keys`` under the data dir (`complaints up` writes one, mode 0600).
- A data key (DEK, AES-256) per customer: its id (``kid``) travels with every ciphertext; the DEK
  itself only wrapped (AES-256-GCM under the KEK, bound to the customer and the key id).
- A sealed field: AES-256-GCM under the customer's DEK, a random 96-bit nonce, the associated data
  binding it to the customer and the field name (a phone sealed for one customer or field does not
  open as another).
- A sealed blob (a dead letter's original bytes): a fresh DEK of its own, wrapped by the KEK.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from schemas.events import Contact, LetterSeal, SealedContact, SealedField, WrappedKey
from services.common.errors import ConfigError
from services.common.privacy import ensure_secret_file, mask

MASTER_KEYS_VARIABLE = "PII_MASTER_KEYS"
MASTER_KEYS_FILE = "pii-master-keys"
KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
KEY_BYTES = 32
NONCE_BYTES = 12
FIELDS = ("name", "phone", "email")  # sealed, and opened into the contact's clear fields
ACCOUNT = "account"  # the sender's WeChat openid: sealed, opened only for the transport
SEALED_FIELDS = (*FIELDS, ACCOUNT)
ALG = "AES-256-GCM"
_FIELD_AAD = b"complaints-pii-v1"
_DEK_AAD = b"complaints-dek-v1"
_LETTER_AAD = b"complaints-deadletter-v1"


class Unreadable(Exception):
    """A ciphertext that does not open: wrong key, wrong customer or field, or altered."""


class Erased(Exception):
    """The customer's data key is gone (``complaints erase-customer``): the data is unreadable."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode())
    except (binascii.Error, ValueError):
        raise Unreadable("not base64") from None


def _aad(*parts: str, tag: bytes) -> bytes:
    return b"\0".join([tag, *(p.encode() for p in parts)])


def _encrypt(key: bytes, plaintext: bytes, aad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    return _b64(nonce + AESGCM(key).encrypt(nonce, plaintext, aad))


def _decrypt(key: bytes, token: str, aad: bytes) -> bytes:
    raw = _unb64(token)
    if len(raw) < NONCE_BYTES + 16:
        raise Unreadable("too short")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
    except InvalidTag:
        raise Unreadable("authentication failed (wrong key, customer or field, or altered)") from None


# ---- master keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterKeys:
    """The key-encryption keys by id; ``current`` wraps, every one unwraps."""

    keys: Mapping[str, bytes]
    current: str

    def __repr__(self) -> str:  # never a key
        return f"MasterKeys(kids={list(self.keys)}, current={self.current!r})"

    @classmethod
    def parse(cls, text: str, *, where: str = MASTER_KEYS_VARIABLE) -> MasterKeys:
        """``kid:base64[,kid:base64...]``; ConfigError naming ``where`` and the entry, never a key."""
        keys: dict[str, bytes] = {}
        entries = [e.strip() for e in text.replace("\n", ",").split(",") if e.strip()]
        if not entries:
            raise ConfigError(f"{where}: no key: set kid:base64 of a random {KEY_BYTES}-byte key")
        for n, entry in enumerate(entries, 1):
            kid, sep, value = entry.partition(":")
            if not sep or not KID.match(kid):
                raise ConfigError(f"{where}: entry {n} is not kid:base64 (kid: 1-64 of A-Z a-z 0-9 . _ -)")
            if kid in keys:
                raise ConfigError(f"{where}: key id {kid} is listed twice")
            try:
                key = base64.urlsafe_b64decode(value.strip().replace("+", "-").replace("/", "_").encode())
            except (binascii.Error, ValueError):
                raise ConfigError(f"{where}: key {kid} is not base64") from None
            if len(key) != KEY_BYTES:
                raise ConfigError(f"{where}: key {kid} is {len(key)} bytes, not {KEY_BYTES}")
            keys[kid] = key
        return cls(keys=keys, current=entries[0].partition(":")[0])

    def wrap_key(self, dek: bytes, aad: bytes) -> tuple[str, str]:
        """(master kid, wrapped) of a data key."""
        return self.current, _encrypt(self.keys[self.current], dek, aad)

    def unwrap_key(self, kek: str, wrapped: str, aad: bytes) -> bytes:
        key = self.keys.get(kek)
        if key is None:
            raise Unreadable(f"master key {kek} is not configured ({MASTER_KEYS_VARIABLE})")
        return _decrypt(key, wrapped, aad)


def master_keys_path(data_dir: Path) -> Path:
    return data_dir / MASTER_KEYS_FILE


def ensure_master_keys(data_dir: Path) -> Path:
    """Write a master key file (mode 0600) under the data dir unless one is there; its path."""
    return ensure_secret_file(master_keys_path(data_dir), make=lambda: generate_master_keys() + "\n")


def generate_master_keys(kid: str | None = None) -> str:
    """A new ``kid:base64`` entry (to put first in PII_MASTER_KEYS)."""
    return f"{kid or 'k' + datetime.now(UTC).strftime('%Y%m%d')}:{_b64(secrets.token_bytes(KEY_BYTES))}"


def master_keys(given: str | None, data_dir: Path) -> MasterKeys:
    """PII_MASTER_KEYS, else the data dir's file; ConfigError naming both when neither is there."""
    if given is not None and given.strip():
        return MasterKeys.parse(given)
    path = master_keys_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"environment: {MASTER_KEYS_VARIABLE}: not set: the master key that wraps the customers' "
            f"data keys has no default; set it to kid:base64 of a random {KEY_BYTES}-byte key (the same "
            f"for intake, the notifier, the desk and `complaints erase-customer`; `complaints up` "
            f"writes one to {path})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the master keys ({exc.strerror})") from None
    return MasterKeys.parse(text, where=str(path))


def master_keys_of(given: SecretStr | None, data_dir: Path) -> MasterKeys:
    """The master keys of a service's settings (PII_MASTER_KEYS), else the data dir's file."""
    return master_keys(given.get_secret_value() if given is not None else None, data_dir)


# ---- data keys --------------------------------------------------------------------------------


def new_data_key(masters: MasterKeys, subject: str, *, now: datetime) -> tuple[WrappedKey, bytes]:
    """A fresh DEK for ``subject`` (a customer key): its wrapped record and the key itself."""
    kid = secrets.token_hex(8)
    dek = AESGCM.generate_key(bit_length=256)
    kek, wrapped = masters.wrap_key(dek, _aad(subject, kid, tag=_DEK_AAD))
    return WrappedKey(subject=subject, kid=kid, kek=kek, wrapped=wrapped, created_at=now), dek


def unwrap(masters: MasterKeys, record: WrappedKey) -> bytes:
    return masters.unwrap_key(record.kek, record.wrapped, _aad(record.subject, record.kid, tag=_DEK_AAD))


def rewrap(masters: MasterKeys, record: WrappedKey) -> WrappedKey:
    """The same DEK wrapped by the current master key (rotation)."""
    dek = unwrap(masters, record)
    kek, wrapped = masters.wrap_key(dek, _aad(record.subject, record.kid, tag=_DEK_AAD))
    return record.model_copy(update={"kek": kek, "wrapped": wrapped})


# ---- fields -----------------------------------------------------------------------------------


def seal(dek: bytes, kid: str, subject: str, field: str, value: str) -> SealedField:
    return SealedField(kid=kid, ct=_encrypt(dek, value.encode(), _aad(subject, field, tag=_FIELD_AAD)))


def open_field(dek: bytes, subject: str, field: str, sealed: SealedField) -> str:
    return _decrypt(dek, sealed.ct, _aad(subject, field, tag=_FIELD_AAD)).decode()


def sealing_subject(customer_key: str, complaint_id: str, anonymous: str) -> str:
    """Whose key seals a contact: the customer's, or (a name without an identity) the complaint's."""
    return f"anon-{complaint_id}" if customer_key == anonymous else customer_key


def seal_contact(contact: Contact, *, subject: str, kid: str, dek: bytes,
                 account: str | None = None) -> Contact:
    """The contact with name, phone and e-mail sealed and masked; nothing in clear.

    ``account``: the sender's account on the channel they came by (a WeChat openid), sealed as
    the field ``account``: a contact has no clear field for it, the notifier opens it only for
    its transport (services/notifier/opening.py).
    """
    if contact.sealed is not None:
        return contact
    fields = {f: getattr(contact, f) for f in FIELDS if getattr(contact, f)}
    if account:
        fields[ACCOUNT] = account
    if not fields:
        return contact
    return Contact(
        language=contact.language,
        phone_masked=mask(contact.phone) if contact.phone else None,
        email_masked=mask(contact.email) if contact.email else None,
        sealed=SealedContact(subject=subject,
                             **{f: seal(dek, kid, subject, f, v) for f, v in fields.items()}),
    )


def kids_of(contact: Contact) -> set[str]:
    s = contact.sealed
    return {f.kid for f in (getattr(s, n) for n in SEALED_FIELDS) if f is not None} if s else set()


def open_contact(contact: Contact, deks: Mapping[str, bytes]) -> Contact:
    """The contact in clear, given the DEKs by key id; Erased when one is missing.

    A sealed ``account`` has no clear field: it is left out (opened only for the notifier's
    transport), but its key missing counts as erased like the others.
    """
    s = contact.sealed
    if s is None:
        return contact
    clear: dict[str, str] = {}
    for f in SEALED_FIELDS:
        sealed: SealedField | None = getattr(s, f)
        if sealed is None:
            continue
        dek = deks.get(sealed.kid)
        if dek is None:
            raise Erased(f"data key {sealed.kid} of customer {s.subject} is gone")
        if f in FIELDS:
            clear[f] = open_field(dek, s.subject, f, sealed)
    return contact.model_copy(update={**clear, "sealed": None})


# ---- blobs (dead letters) ---------------------------------------------------------------------


def seal_blob(masters: MasterKeys, data: bytes) -> tuple[bytes, LetterSeal]:
    """(nonce + ciphertext, how to open it): a fresh DEK for this blob, wrapped by the master key."""
    dek = AESGCM.generate_key(bit_length=256)
    kek, wrapped = masters.wrap_key(dek, _LETTER_AAD + b"\0dek")
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + AESGCM(dek).encrypt(nonce, data, _LETTER_AAD)
    return blob, LetterSeal(kek=kek, wrapped_key=wrapped)


def open_blob(masters: MasterKeys, blob: bytes, seal_: LetterSeal) -> bytes:
    dek = masters.unwrap_key(seal_.kek, seal_.wrapped_key, _LETTER_AAD + b"\0dek")
    try:
        return AESGCM(dek).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _LETTER_AAD)
    except InvalidTag:
        raise Unreadable("dead letter: authentication failed") from None
