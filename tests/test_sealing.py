"""Field-level envelope encryption (services.common.sealing): pure, no broker, no Redis."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.events import Contact
from services.common import sealing
from services.common.errors import ConfigError

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PHONE, EMAIL, NAME = "+8613800138000", "li.lei@example.com", "李雷"


def masters(*kids: str) -> sealing.MasterKeys:
    return sealing.MasterKeys.parse(",".join(sealing.generate_master_keys(k) for k in kids or ("k1",)))


def test_a_field_opens_only_for_its_customer_and_field() -> None:
    m = masters()
    record, dek = sealing.new_data_key(m, "cust-a", now=NOW)
    sealed = sealing.seal(dek, record.kid, "cust-a", "phone", PHONE)
    # Then the ciphertext holds no clear bytes, and it opens for the same customer and field
    assert PHONE.encode() not in base64.urlsafe_b64decode(sealed.ct) and PHONE not in sealed.ct
    assert sealing.open_field(dek, "cust-a", "phone", sealed) == PHONE
    # And not as another customer's, nor as another field (the associated data binds both)
    with pytest.raises(sealing.Unreadable):
        sealing.open_field(dek, "cust-b", "phone", sealed)
    with pytest.raises(sealing.Unreadable):
        sealing.open_field(dek, "cust-a", "email", sealed)
    # And two seals of one value differ (a random nonce each): equal phones are not linkable
    assert sealing.seal(dek, record.kid, "cust-a", "phone", PHONE).ct != sealed.ct


def test_a_tampered_ciphertext_or_wrapped_key_does_not_open() -> None:
    m = masters()
    record, dek = sealing.new_data_key(m, "cust-a", now=NOW)
    sealed = sealing.seal(dek, record.kid, "cust-a", "email", EMAIL)
    raw = bytearray(base64.urlsafe_b64decode(sealed.ct))
    raw[-1] ^= 1
    with pytest.raises(sealing.Unreadable):
        sealing.open_field(dek, "cust-a", "email", sealed.model_copy(
            update={"ct": base64.urlsafe_b64encode(bytes(raw)).decode()}))
    with pytest.raises(sealing.Unreadable):
        sealing.open_field(dek, "cust-a", "email", sealed.model_copy(update={"ct": "AAAA"}))
    # a wrapped key moved to another customer (or key id) does not unwrap
    with pytest.raises(sealing.Unreadable):
        sealing.unwrap(m, record.model_copy(update={"subject": "cust-b"}))
    assert sealing.unwrap(m, record) == dek


def test_rotation_the_first_master_key_wraps_every_listed_one_unwraps() -> None:
    old = sealing.generate_master_keys("k2025")
    record, dek = sealing.new_data_key(sealing.MasterKeys.parse(old), "cust-a", now=NOW)
    assert record.kek == "k2025"
    # Given a new key put first, the old one kept
    rotated = sealing.MasterKeys.parse(f"{sealing.generate_master_keys('k2026')},{old}")
    # Then old wrapped keys still unwrap, new ones are wrapped by the new key, and a re-wrap moves one
    assert sealing.unwrap(rotated, record) == dek
    assert sealing.new_data_key(rotated, "cust-b", now=NOW)[0].kek == "k2026"
    moved = sealing.rewrap(rotated, record)
    only_new = sealing.MasterKeys.parse(_entry(rotated, "k2026"))
    assert moved.kek == "k2026" and sealing.unwrap(only_new, moved) == dek
    # And once the old key is dropped, a key still wrapped by it does not open
    with pytest.raises(sealing.Unreadable, match="k2025 is not configured"):
        sealing.unwrap(sealing.MasterKeys.parse(_entry(rotated, "k2026")), record)


def _entry(m: sealing.MasterKeys, kid: str) -> str:
    return f"{kid}:{base64.urlsafe_b64encode(m.keys[kid]).decode()}"


def test_a_contact_is_sealed_whole_with_masked_forms_and_opens_again() -> None:
    m = masters()
    record, dek = sealing.new_data_key(m, "cust-a", now=NOW)
    contact = Contact(name=NAME, phone=PHONE, email=EMAIL, language="en")
    sealed = sealing.seal_contact(contact, subject="cust-a", kid=record.kid, dek=dek)
    text = sealed.model_dump_json()
    assert (sealed.name, sealed.phone, sealed.email) == (None, None, None)
    assert not any(v in text for v in (NAME, PHONE, EMAIL, "li.lei", "13800138000"))
    assert sealed.masked() == {"phone": "+86*******8000", "email": "l***@example.com"}
    assert sealed.named and sealed.reachable_by == "email" and sealed.language == "en"
    # Then it opens with the data key, and without it the customer counts as erased
    opened = sealing.open_contact(sealed, {record.kid: dek})
    assert (opened.name, opened.phone, opened.email, opened.sealed) == (NAME, PHONE, EMAIL, None)
    with pytest.raises(sealing.Erased):
        sealing.open_contact(sealed, {})
    # And an old event's clear contact still parses and masks (backward readable)
    old = Contact.model_validate({"name": NAME, "phone": PHONE, "language": "zh"})
    assert old.masked() == {"phone": "+86*******8000"} and old.reachable_by == "sms"


def test_a_dead_letters_bytes_are_sealed_with_a_key_of_their_own() -> None:
    m = masters()
    blob, seal = sealing.seal_blob(m, f'{{"phone": "{PHONE}"}}'.encode())
    assert PHONE.encode() not in blob and seal.kek == "k1"
    assert sealing.open_blob(m, blob, seal) == f'{{"phone": "{PHONE}"}}'.encode()
    with pytest.raises(sealing.Unreadable):
        sealing.open_blob(m, blob[:-1] + bytes([blob[-1] ^ 1]), seal)


@pytest.mark.parametrize(("value", "message"), [
    ("", "no key"),
    ("nokid", "entry 1 is not kid:base64"),
    ("k1:!!!notbase64", "key k1 is not base64"),
    ("k1:" + base64.urlsafe_b64encode(b"short").decode(), "key k1 is 5 bytes, not 32"),
    ("k1:" + base64.urlsafe_b64encode(b"x" * 32).decode() + ",k1:" + base64.urlsafe_b64encode(b"y" * 32).decode(),
     "key id k1 is listed twice"),
])
def test_bad_master_keys_are_refused_naming_the_variable_never_the_value(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sealing.master_keys(value or " ", Path("/nonexistent"))
    text = str(caught.value)
    assert message in text and "PII_MASTER_KEYS" in text or "not set" in text
    assert "notbase64" not in text and base64.urlsafe_b64encode(b"x" * 32).decode() not in text


def test_master_keys_come_from_the_variable_or_the_data_dirs_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PII_MASTER_KEYS: not set"):
        sealing.master_keys(None, tmp_path)
    path = sealing.ensure_master_keys(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    first = sealing.master_keys(None, tmp_path)
    assert sealing.ensure_master_keys(tmp_path) == path and sealing.master_keys(None, tmp_path) == first
    assert repr(first).startswith("MasterKeys(kids=") and "=" not in repr(first).split("kids=")[1][:3]
    given = sealing.generate_master_keys("ops")
    assert sealing.master_keys(given, tmp_path).current == "ops"


@pytest.mark.parametrize("service", ["intake", "notifier"])
@pytest.mark.parametrize(("value", "expected"), [
    (None, "PII_MASTER_KEYS: not set"),
    ("k1:c2VjcmV0LWJ1dC10b28tc2hvcnQ=", "PII_MASTER_KEYS: key k1 is 20 bytes, not 32"),
])
def test_services_refuse_to_start_without_a_usable_master_key(tmp_path: Path, service: str, value: str | None,
                                                              expected: str) -> None:
    import subprocess
    import sys

    # Given no (or a short) PII_MASTER_KEYS and a data dir without the key file `complaints up` writes
    env = {"PATH": "/usr/bin:/bin", "COMPLAINTS_DATA_DIR": str(tmp_path),
           "INTAKE_IDENTITY_KEY": "an-identity-key-0123456789", "NOTIFIER_OUTBOX_ENABLED": "true",
           **({"PII_MASTER_KEYS": value} if value else {})}
    # When the service starts
    done = subprocess.run([sys.executable, "-m", "services", "run", service], env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)
    # Then it stops with a configuration error naming the variable, never the value
    assert done.returncode == 2, done.stderr[-2000:]
    assert expected in done.stderr
    assert not value or value.partition(":")[2] not in done.stderr
