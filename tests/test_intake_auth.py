"""HTTP channel signatures (v2): pure checks with the time passed in, and the client side that signs
(services.intake.signing: the secrets `complaints up` leaves, a signed POST)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Any

import pytest

from services.intake import auth, signing

SECRET = b"s" * 24
BODY = b'{"text": "hello"}'
NOW = 1_800_000_000.0
RING = {"*": {"default": SECRET}}
PATH = "/v1/inbound/sms"


def signed(secret: bytes = SECRET, body: bytes = BODY, *, now: float = NOW, key_id: str = "default",
           channel: str = "sms", content_type: str = "application/json") -> dict[str, str]:
    return {"Content-Type": content_type, **auth.sign(
        secret, body, key_id=key_id, method="POST", path=f"/v1/inbound/{channel}", channel=channel,
        content_type=content_type, now=now)}


def check(headers: dict[str, str], body: bytes = BODY, ring: auth.Keyring = RING, *,
          v1: str = "reject") -> auth.Verified:
    return auth.verify(ring, headers, body, channel="sms", method="POST", path=PATH, now=NOW,
                       max_age=300, max_skew=30, v1=v1)  # type: ignore[arg-type]


def test_a_signed_request_within_the_window_passes() -> None:
    verified = check(signed(now=NOW - 30))
    assert (verified.version, verified.key_id) == (2, "default")


@pytest.mark.parametrize(("headers", "body", "ring", "reason"), [
    ({}, BODY, RING, "missing"),
    (signed(now=NOW - 301), BODY, RING, "window"),
    (signed(now=NOW + 31), BODY, RING, "ahead"),
    (signed(), BODY + b" ", RING, "does not match"),
    (signed(b"other" * 5), BODY, RING, "does not match"),
    ({auth.TIMESTAMP_HEADER: "soon", auth.SIGNATURE_HEADER: "v2=00"}, BODY, RING, "unix time"),
    (signed(), BODY, {}, "no signing secret"),
    (signed(key_id="gone"), BODY, RING, "unknown key id"),
    ({**signed(), auth.NONCE_HEADER: "short"}, BODY, RING, "Nonce"),
    ({**signed(), auth.NONCE_HEADER: "x" * 16 + ":injected"}, BODY, RING, "Nonce"),
])
def test_bad_signatures_are_refused_with_a_reason(headers: dict[str, str], body: bytes,
                                                  ring: auth.Keyring, reason: str) -> None:
    with pytest.raises(auth.Unauthorized, match=reason):
        check(headers, body, ring)


def test_a_timestamp_cannot_be_moved_without_breaking_the_signature() -> None:
    headers = signed(now=NOW - 1000)
    headers[auth.TIMESTAMP_HEADER] = str(int(NOW))
    with pytest.raises(auth.Unauthorized, match="does not match"):
        check(headers)


@pytest.mark.parametrize(("channel", "expected"), [("sms", b"sms-secret"), ("email", b"any")])
def test_a_channel_secret_wins_over_the_catch_all(channel: str, expected: bytes) -> None:
    ring = auth.keyring({"sms": b"sms-secret", "*": b"any"})
    assert auth.current_key(channel, ring) == ("default", expected)


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"*": "any"}', {"*": {"default": b"any"}}),
    ('{"sms": "sms-secret", "*": "any"}', {"sms": {"default": b"sms-secret"}, "*": {"default": b"any"}}),
    ('{"sms": {"k1": "old", "k2": "new"}}', {"sms": {"k1": b"old", "k2": b"new"}}),
    ('{"sms": 42}', {"sms": {"default": b"42"}}),
    ("{}", {}),
])
def test_secrets_are_read_from_their_json_spelling(raw: str, expected: dict[str, dict[str, bytes]]) -> None:
    # Given INTAKE_SIGNING_SECRETS as JSON, When parsed, Then secrets by channel, as bytes
    assert signing.parse_secrets(raw) == expected


@pytest.mark.parametrize("raw", ['["a"]', '"secret"', "not json"])
def test_secrets_that_are_not_an_object_of_channels_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        signing.parse_secrets(raw)


def test_the_environment_wins_over_the_file_complaints_up_left(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the secrets file `complaints up` writes, readable by its owner only
    monkeypatch.delenv("INTAKE_SIGNING_SECRETS", raising=False)
    assert signing.load_secrets(tmp_path) == {}
    signing.write_secrets(tmp_path, '{"*": "from-file"}')
    assert signing.secrets_path(tmp_path).stat().st_mode & 0o777 == 0o600
    # When nothing is in the environment, Then the file's secrets are used
    assert signing.load_secrets(tmp_path) == {"*": {"default": b"from-file"}}
    # When INTAKE_SIGNING_SECRETS is set, Then it wins
    monkeypatch.setenv("INTAKE_SIGNING_SECRETS", '{"*": "from-env"}')
    assert signing.load_secrets(tmp_path) == {"*": {"default": b"from-env"}}


def test_a_signed_post_carries_the_channel_secrets_signature_intake_accepts() -> None:
    # Given a loopback server that keeps the one request it gets
    seen: dict[str, Any] = {}

    class Keep(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen["headers"] = self.headers
            seen["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"complaint_id": "x"}')

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Keep)
    server.timeout = 10
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        # When a body is posted for the sms channel with a channel secret and a catch-all
        status, answer = signing.signed_post(
            f"http://127.0.0.1:{server.server_address[1]}/v1/inbound/sms", "sms", BODY,
            content_type="application/json", secrets={"sms": b"sms-secret", "*": b"any"},
            headers={"Idempotency-Key": "k-1"})
        thread.join(timeout=10)
    finally:
        server.server_close()
    # Then the answer is parsed, and intake's check passes with the channel's own secret
    assert (status, answer) == (202, {"complaint_id": "x"})
    assert seen["body"] == BODY and seen["headers"]["Idempotency-Key"] == "k-1"
    sent_at = float(seen["headers"][auth.TIMESTAMP_HEADER])
    headers = dict(seen["headers"].items())
    assert auth.verify({"sms": {"default": b"sms-secret"}}, headers, BODY, channel="sms", method="POST",
                       path=PATH, now=sent_at, max_age=300, max_skew=30).version == 2
    with pytest.raises(auth.Unauthorized, match="does not match"):
        auth.verify({"*": {"default": b"any"}}, headers, BODY, channel="sms", method="POST", path=PATH,
                    now=sent_at, max_age=300, max_skew=30)


def test_a_signed_post_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="not an http"):
        signing.signed_post("file:///etc/passwd", "sms", BODY, content_type="text/plain", secrets={})
