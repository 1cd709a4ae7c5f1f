"""The notifier's transports against real local servers: an SMTP server (aiosmtpd, with
STARTTLS and AUTH) and an HTTP sink standing in for the SMS gateway and chat robots."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import subprocess
from collections.abc import Iterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from services.notifier.messages import Notification
from services.notifier.transports import (
    HttpConfig,
    HttpTransport,
    InDoubtDelivery,
    PermanentDelivery,
    SmtpConfig,
    SmtpTransport,
    TransientDelivery,
    backoff,
)
from tests.harness import free_port

pytestmark = pytest.mark.integration


def note(transport: str = "email", address: str = "li.lei@example.com", language: str = "zh",
         nid: str = "n-1") -> Notification:
    return Notification(notification_id=nid, complaint_id="261123-ABCDEFGHJK", kind="result",  # type: ignore[arg-type]
                        transport=transport, address=address, language=language,  # type: ignore[arg-type]
                        subject="投诉 261123-ABCDEFGHJK 处理结果", body="您好，已为您更换新机。")


# ---- SMTP -------------------------------------------------------------------------


class Mailbox:
    """An aiosmtpd handler that keeps every message and refuses one address."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[str] = []

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"notifier" \
            and auth_data.password == b"s3cret"
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), trusted by the client via ca_file."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",  # noqa: S607
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture()
def smtp_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Mailbox, int]]:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=box.authenticate,
                            auth_require_tls=True)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def smtp(port: int, certificate: tuple[Path, Path], **overrides: Any) -> SmtpTransport:
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "starttls",
                              "username": "notifier", "password": "s3cret", "sender": "service@example.com",
                              "sender_name": "客户服务", "domain": "complaints.example.com",
                              "ca_file": str(certificate[0]), "timeout": 10}
    return SmtpTransport(SmtpConfig(**{**fields, **overrides}))


def test_smtp_delivers_a_threaded_utf8_message_over_starttls_with_auth(
        smtp_server: tuple[Mailbox, int], certificate: tuple[Path, Path]) -> None:
    box, port = smtp_server
    asyncio.run(smtp(port, certificate).send(note()))
    (msg,) = box.messages
    assert box.logins == ["notifier"]
    assert str(make_header(decode_header(msg["Subject"]))) == "投诉 261123-ABCDEFGHJK 处理结果"
    assert msg["Message-ID"] == "<n-1@complaints.example.com>"
    assert msg["In-Reply-To"] == msg["References"] == "<complaint.261123-ABCDEFGHJK@complaints.example.com>"
    assert msg["To"] == "li.lei@example.com" and msg["Content-Language"] == "zh-CN"
    assert "客户服务" in str(make_header(decode_header(msg["From"])))
    assert msg.get_content_charset() == "utf-8"
    assert msg.get_content().strip() == "您好，已为您更换新机。"


@pytest.mark.parametrize(("overrides", "error", "message"), [
    ({"password": "wrong"}, PermanentDelivery, "authentication failed"),
    ({"security": "none"}, PermanentDelivery, "530"),         # the server insists on STARTTLS
    ({"ca_file": None}, TransientDelivery, "SSLCertVerificationError"),  # an untrusted certificate
])
def test_smtp_failures_are_classified(smtp_server: tuple[Mailbox, int], certificate: tuple[Path, Path],
                                      overrides: dict[str, Any], error: type[Exception],
                                      message: str) -> None:
    _, port = smtp_server
    with pytest.raises(error, match=message):
        asyncio.run(smtp(port, certificate, **overrides).send(note()))


def test_a_refused_recipient_is_permanent_and_a_dead_server_transient(
        smtp_server: tuple[Mailbox, int], certificate: tuple[Path, Path]) -> None:
    _, port = smtp_server
    with pytest.raises(PermanentDelivery, match="recipient refused"):
        asyncio.run(smtp(port, certificate).send(note(address="nobody@example.com")))
    with pytest.raises(TransientDelivery):
        asyncio.run(smtp(free_port(), certificate).send(note()))


class Stalling:
    """An aiosmtpd handler that stalls (or answers ``answer``) at one step of the session."""

    def __init__(self, stall: str, answer: str | None = None) -> None:
        self.stall, self.answer, self.contents = stall, answer, 0

    async def handle_MAIL(self, server: Any, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          mail_options: list[str]) -> str:
        if self.stall == "MAIL":
            await asyncio.sleep(3)
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.contents += 1  # the server has the message, whatever it answers
        if self.stall == "DATA":
            await asyncio.sleep(3)
        return self.answer or "250 Message accepted"


@pytest.mark.parametrize(("stall", "answer", "error", "contents"), [
    ("MAIL", None, TransientDelivery, 0),        # no answer before the message went: try again
    ("DATA", None, InDoubtDelivery, 1),          # no answer after the content went: it may have it
    ("none", "451 4.3.0 try later", TransientDelivery, 1),   # a refusal is no doubt
    ("none", "554 5.6.0 rejected", PermanentDelivery, 1),
])
def test_smtp_failures_after_the_content_went_are_in_doubt(stall: str, answer: str | None,
                                                           error: type[Exception], contents: int) -> None:
    handler, port = Stalling(stall, answer), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, security="none",
                                             sender="service@example.com", domain="example.com",
                                             timeout=0.5))
        with pytest.raises(error):
            asyncio.run(transport.send(note()))
        assert handler.contents == contents
    finally:
        controller.stop()


def test_smtp_dot_stuffs_the_content_and_sends_non_ascii_addresses_with_smtputf8() -> None:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        transport = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, security="none",
                                             sender="service@example.com", domain="example.com"))
        dotted = note(address="李雷@例子.中国").model_copy(update={"body": "第一行\n.\n.最后一行"})
        asyncio.run(transport.send(dotted))
        (msg,) = box.messages
        assert msg["To"] == "李雷@例子.中国" and msg.get_content().splitlines() == ["第一行", ".", ".最后一行"]
    finally:
        controller.stop()


# ---- HTTP gateways ----------------------------------------------------------------------


class Sink:
    """A local HTTP server that records requests and answers from a script."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.script: list[tuple[int, Any]] = []
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        status, answer = self.script.pop(0) if self.script else (200, {"errcode": 0})
        return web.json_response(answer, status=status)


async def with_sink(scenario: Any) -> Sink:
    sink = Sink()
    app = web.Application()
    app.router.add_post("/{tail:.*}", sink.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await scenario(sink, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
    return sink


def test_the_sms_gateway_gets_json_with_the_id_as_idempotency_key() -> None:
    async def scenario(sink: Sink, base: str) -> None:
        gateway = HttpTransport("sms-gateway", HttpConfig(url=f"{base}/sms", token="t0k"), "sms")
        await gateway.send(note("sms", "+8613800138000"))
        path, headers, body = sink.requests[0]
        assert path == "/sms" and headers["Idempotency-Key"] == "n-1"
        assert headers["Authorization"] == "Bearer t0k"
        assert body == {"to": "+8613800138000", "reference": "n-1",
                        "text": "投诉 261123-ABCDEFGHJK 处理结果: 您好，已为您更换新机。"}
    asyncio.run(with_sink(scenario))


@pytest.mark.parametrize(("kind", "shape"), [
    ("wecom", {"msgtype": "text", "text": {"content": "投诉 261123-ABCDEFGHJK 处理结果\n您好，已为您更换新机。"}}),
    ("dingtalk", {"msgtype": "text", "text": {"content": "投诉 261123-ABCDEFGHJK 处理结果\n您好，已为您更换新机。"}}),
    ("slack", {"text": "投诉 261123-ABCDEFGHJK 处理结果\n您好，已为您更换新机。"}),
])
def test_chat_robots_get_their_own_payload(kind: str, shape: dict[str, Any]) -> None:
    async def scenario(sink: Sink, base: str) -> None:
        robot = HttpTransport(kind, HttpConfig(url=f"{base}/hook"), kind)  # type: ignore[arg-type]
        await robot.send(note("chat", "quality-heads"))
        assert sink.requests[0][2] == shape
    asyncio.run(with_sink(scenario))


@pytest.mark.parametrize(("kind", "answer", "error"), [
    ("sms", (503, {}), TransientDelivery),
    ("sms", (429, {}), TransientDelivery),
    ("sms", (400, {"error": "bad number"}), PermanentDelivery),
    ("wecom", (200, {"errcode": 45009, "errmsg": "api freq out of limit"}), TransientDelivery),
    ("wecom", (200, {"errcode": 93000, "errmsg": "invalid webhook url"}), PermanentDelivery),
    ("dingtalk", (200, {"errcode": 130101}), TransientDelivery),
])
def test_gateway_answers_are_classified(kind: str, answer: tuple[int, Any], error: type[Exception]) -> None:
    async def scenario(sink: Sink, base: str) -> None:
        sink.script.append(answer)
        with pytest.raises(error):
            await HttpTransport(kind, HttpConfig(url=f"{base}/x"), kind).send(note("sms"))  # type: ignore[arg-type]
    asyncio.run(with_sink(scenario))


def test_a_gateway_that_took_the_request_and_timed_out_is_in_doubt() -> None:
    async def scenario(sink: Sink, base: str) -> None:
        sink.delay = 2.0
        with pytest.raises(InDoubtDelivery, match="TimeoutError after the request was sent"):
            await HttpTransport("sms", HttpConfig(url=f"{base}/x", timeout=0.2), "sms").send(note("sms"))
        assert len(sink.requests) == 1  # it had the request
    asyncio.run(with_sink(scenario))


async def raw_server(on_connect: Any) -> tuple[asyncio.Server, int]:
    port = free_port()
    return await asyncio.start_server(on_connect, "127.0.0.1", port), port


def test_a_gateway_that_hangs_up_after_the_request_is_in_doubt() -> None:
    async def scenario() -> None:
        got: list[bytes] = []

        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.append(await reader.readuntil(b"\r\n\r\n"))
            writer.close()
        server, port = await raw_server(hang_up)
        async with server:
            with pytest.raises(InDoubtDelivery, match="ServerDisconnectedError"):
                await HttpTransport("sms", HttpConfig(url=f"http://127.0.0.1:{port}/x"), "sms").send(note("sms"))
        assert len(got) == 1 and b"Idempotency-Key: n-1" in got[0]
    asyncio.run(scenario())


def test_a_timeout_before_the_request_went_is_transient() -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(65536)  # the TLS handshake's first words, never answered
                await reader.read(65536)  # till the client gives up
            finally:
                writer.close()
        server, port = await raw_server(silent)
        async with server:
            with pytest.raises(TransientDelivery, match="TimeoutError"):
                await HttpTransport("sms", HttpConfig(url=f"https://127.0.0.1:{port}/x", timeout=0.3),
                                    "sms").send(note("sms"))
    asyncio.run(scenario())


def test_a_dead_gateway_is_transient() -> None:
    with pytest.raises(TransientDelivery):
        asyncio.run(HttpTransport("sms", HttpConfig(url=f"http://127.0.0.1:{free_port()}/x"), "sms")
                    .send(note("sms")))


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_backoff_grows_exponentially_with_jitter_up_to_a_cap(attempt: int) -> None:
    rng = random.Random(attempt)
    waits = [backoff(attempt, base=0.5, cap=30, rng=rng) for _ in range(200)]
    ceiling = min(30, 0.5 * 2 ** (attempt - 1))
    assert all(ceiling / 2 <= w <= ceiling for w in waits)
    assert len({round(w, 6) for w in waits}) > 100  # jittered, not a fixed delay
