"""HTTP channel signatures: pure checks with the time passed in."""

from __future__ import annotations

import pytest

from services.intake import auth

SECRET = b"s" * 24
BODY = b'{"text": "hello"}'
NOW = 1_800_000_000.0


def test_a_signed_request_within_the_window_passes() -> None:
    auth.verify(SECRET, auth.sign(SECRET, BODY, now=NOW - 30), BODY, now=NOW, max_age=300)


@pytest.mark.parametrize(("headers", "body", "secret", "reason"), [
    ({}, BODY, SECRET, "missing"),
    (auth.sign(SECRET, BODY, now=NOW - 301), BODY, SECRET, "window"),
    (auth.sign(SECRET, BODY, now=NOW + 301), BODY, SECRET, "window"),
    (auth.sign(SECRET, BODY, now=NOW), BODY + b" ", SECRET, "does not match"),
    (auth.sign(b"other" * 5, BODY, now=NOW), BODY, SECRET, "does not match"),
    ({auth.TIMESTAMP_HEADER: "soon", auth.SIGNATURE_HEADER: "sha256=00"}, BODY, SECRET, "unix time"),
    (auth.sign(SECRET, BODY, now=NOW), BODY, None, "no signing secret"),
])
def test_bad_signatures_are_refused_with_a_reason(headers: dict[str, str], body: bytes,
                                                  secret: bytes | None, reason: str) -> None:
    with pytest.raises(auth.Unauthorized, match=reason):
        auth.verify(secret, headers, body, now=NOW, max_age=300)


def test_a_timestamp_cannot_be_moved_without_breaking_the_signature() -> None:
    headers = auth.sign(SECRET, BODY, now=NOW - 1000)
    headers[auth.TIMESTAMP_HEADER] = str(int(NOW))
    with pytest.raises(auth.Unauthorized, match="does not match"):
        auth.verify(SECRET, headers, BODY, now=NOW, max_age=300)


@pytest.mark.parametrize(("channel", "expected"), [("sms", b"sms-secret"), ("email", b"any")])
def test_a_channel_secret_wins_over_the_catch_all(channel: str, expected: bytes) -> None:
    assert auth.secret_for(channel, {"sms": b"sms-secret", "*": b"any"}) == expected
