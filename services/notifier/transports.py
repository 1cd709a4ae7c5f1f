"""Transports of the notifier: SMTP e-mail, a JSON SMS gateway, chat webhooks.

Every transport raises ``TransientDelivery`` (try again later: the server is down, busy,
refused the connection or timed out before the message was handed over),
``InDoubtDelivery`` (the message was handed over, or partly, and then the answer never
came: a read timeout, a connection dropped after the request or after SMTP DATA's
content was sent; the server may or may not have it) or ``PermanentDelivery`` (this
message can never go: a refused address, a rejected payload); anything it returns from is
delivered. Each carries the
notification id so that the far side can recognise a repeat: the e-mail's Message-ID,
the gateway's ``Idempotency-Key`` header. Messages of one complaint thread together in
mail clients (``In-Reply-To`` / ``References`` name the complaint).

Addresses and message texts are personal data: they are never logged.
"""

from __future__ import annotations

import asyncio
import email.policy
import io
import json
import random
import re
import smtplib
import ssl
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.notifier.logic import Notification


class TransientDelivery(Exception):
    """The message may go later: retry with back-off."""


class InDoubtDelivery(Exception):
    """The message may have reached the server, but no answer came: resending it may deliver it
    twice (the dispatcher resends or holds it by NOTIFIER_IN_DOUBT)."""


class PermanentDelivery(Exception):
    """The message can never go as it is: record the failure and dead-letter it."""


class Unreachable(PermanentDelivery):
    """The customer's channel refused this message for good, through no fault of ours (WeChat's
    48-hour window closed, the customer unfollowed, the post was deleted): a reply on the channel
    is not dead-lettered but becomes a call-back task for the first-contact owner."""

    why: Literal["no_contact", "not_configured", "refused"] = "refused"


class NoTransport(Unreachable):
    """No transport reaches the customer: no contact (``no_contact``), or their channel's reply
    transport is not configured (``not_configured``). A call-back task, like ``Unreachable``."""

    def __init__(self, message: str, *, why: Literal["no_contact", "not_configured"]) -> None:
        super().__init__(message)
        self.why = why


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): exponential, capped, full jitter."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


# ---- e-mail over SMTP -----------------------------------------------------------


class SmtpConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(min_length=3, description="From address, e.g. service@example.com")
    sender_name: str | None = None
    domain: str = Field(min_length=1, description="Right-hand side of Message-IDs.")
    ca_file: str | None = Field(default=None, description="Extra CA bundle to trust (tests, private CAs).")
    timeout: float = Field(default=15.0, gt=0, le=300)


def email_message(note: Notification, config: SmtpConfig, *, now: datetime | None = None) -> EmailMessage:
    """The MIME message of a notification: UTF-8, threaded per complaint, deterministic id."""
    msg = EmailMessage()
    msg["From"] = (formataddr((config.sender_name, config.sender)) if config.sender_name
                   else config.sender)
    msg["To"] = note.address
    msg["Subject"] = note.subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = f"<{note.notification_id}@{config.domain}>"
    thread = f"<complaint.{note.complaint_id}@{config.domain}>"
    msg["In-Reply-To"] = thread
    msg["References"] = thread
    msg["X-Complaint-Id"] = note.complaint_id
    msg.set_content(note.body, charset="utf-8")  # replaces any Content-* header set before
    msg["Content-Language"] = "zh-CN" if note.language == "zh" else "en"
    return msg


class SmtpTransport:
    name = "smtp"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.config.ca_file:
            context.load_verify_locations(self.config.ca_file)
        return context

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        if c.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=self._context())
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            smtp.ehlo()
            if c.security == "starttls":
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if c.username:
                # one mechanism (AUTH PLAIN, under TLS): smtplib.login would try every
                # advertised one and report the last failure
                smtp.user, smtp.password = c.username, (c.password.get_secret_value()
                                                        if c.password else "")
                smtp.auth("PLAIN", smtp.auth_plain)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _send(self, note: Notification) -> None:
        """MAIL, RCPT, DATA one by one (not ``send_message``): what fails before DATA's content
        went is transient or permanent by the server's code; a failure after it is in doubt."""
        c = self.config
        international = not (c.sender.isascii() and note.address.isascii())
        content = _flatten(email_message(note, c), international=international)
        try:
            smtp = self._connect()
            try:
                if international and not smtp.has_extn("smtputf8"):
                    raise PermanentDelivery("smtp: the server takes no SMTPUTF8 (non-ASCII) address")
                code, reply = smtp.mail(c.sender, ["SMTPUTF8", "BODY=8BITMIME"] if international else [])
                if code != 250:
                    raise smtplib.SMTPSenderRefused(code, reply, c.sender)
                code, reply = smtp.rcpt(note.address)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({note.address: (code, reply)})
                _data(smtp, content)
            except BaseException:
                smtp.close()
                raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise PermanentDelivery(f"smtp: recipient refused ({codes})") from None
            raise TransientDelivery(f"smtp: recipient deferred ({codes})") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentDelivery(f"smtp: authentication failed ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            kind = PermanentDelivery if 500 <= exc.smtp_code < 600 else TransientDelivery
            raise kind(f"smtp: server answered {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as exc:  # connection refused, TLS, timeouts
            raise TransientDelivery(f"smtp: {type(exc).__name__}") from None
        try:  # delivered: how the session ends changes nothing
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    async def send(self, note: Notification) -> None:
        if note.transport != "email":
            raise PermanentDelivery(f"smtp cannot deliver a {note.transport} notification")
        await asyncio.to_thread(self._send, note)


def _flatten(msg: EmailMessage, *, international: bool) -> bytes:
    """The message as SMTP carries it (CRLF line ends; UTF-8 headers for SMTPUTF8)."""
    out = io.BytesIO()
    BytesGenerator(out, policy=email.policy.SMTPUTF8 if international else email.policy.SMTP).flatten(msg)
    return out.getvalue()


def _data(smtp: smtplib.SMTP, content: bytes) -> None:
    """DATA, then the content (dot-stuffed) and its end, then the answer.

    Raises ``SMTPDataError`` when the server refuses DATA or answers the content with an
    error, SMTP exceptions or OSError when DATA goes unanswered or the content cannot be
    written to its end (the server cannot have taken it), and ``InDoubtDelivery`` when the
    connection fails or times out while waiting for the answer to the whole content.
    """
    code, reply = smtp.docmd("DATA")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    stuffed = re.sub(rb"(?m)^\.", b"..", content)
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    smtp.send(stuffed + b".\r\n")  # fails before its end went (the server cannot take it): transient
    try:
        code, reply = smtp.getreply()
    except (smtplib.SMTPException, OSError) as exc:
        smtp.close()
        raise InDoubtDelivery(f"smtp: {type(exc).__name__} after the message's content was sent") from None
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)


# ---- HTTP: SMS gateway and chat webhooks ----------------------------------------------


class HttpConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://")
    token: SecretStr | None = Field(default=None, description="Sent as 'Authorization: Bearer ...'.")
    timeout: float = Field(default=10.0, gt=0, le=120)


ChatKind = Literal["wecom", "dingtalk", "slack"]


def chat_payload(kind: ChatKind, note: Notification) -> dict[str, Any]:
    """The incoming-webhook body of each chat product (plain text)."""
    text = f"{note.subject}\n{note.body}"
    if kind == "slack":
        return {"text": text}
    return {"msgtype": "text", "text": {"content": text}}  # WeCom and DingTalk robots


# Chat robots answer 200 with an error code in the body; these mean "slow down".
_RATE_LIMITED = {45009, 130101}


class HttpTransport:
    """POSTs JSON; ``kind`` chooses the body: a generic SMS gateway or a chat robot.

    A failure before the request's headers went (DNS, connect, TLS, connect timeout) is
    transient; one after (read timeout, the server disconnected) is in doubt: the server may
    have acted on the request. One session per send, traced to tell the two apart.
    """

    def __init__(self, name: str, config: HttpConfig, kind: Literal["sms"] | ChatKind) -> None:
        self.name, self.config, self.kind = name, config, kind

    def payload(self, note: Notification) -> dict[str, Any]:
        if self.kind == "sms":
            return {"to": note.address, "text": f"{note.subject}: {note.body}",
                    "reference": note.notification_id}
        return chat_payload(self.kind, note)

    async def send(self, note: Notification) -> None:
        headers = {"Idempotency-Key": note.notification_id}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        status, body = await request(self.name, "POST", self.config.url, json_body=self.payload(note),
                                     headers=headers, timeout=self.config.timeout)
        if status in (408, 425, 429) or status >= 500:
            raise TransientDelivery(f"{self.name}: HTTP {status}")
        if status >= 400:
            raise PermanentDelivery(f"{self.name}: HTTP {status}")
        if self.kind in ("wecom", "dingtalk"):
            _check_robot(self.name, body)


async def request(name: str, method: str, url: str, *, json_body: Any = None,
                  headers: dict[str, str] | None = None, timeout: float) -> tuple[int, bytes]:
    """One HTTP request with a JSON body (or none): the answer's status and body.

    Raises ``TransientDelivery`` for a failure before the request's headers went (DNS, connect,
    TLS, connect timeout) and ``InDoubtDelivery`` for one after (read timeout, disconnected):
    the server may have acted on it. One session per request, traced to tell the two apart.
    The URL (which may hold a token) is never in the exception's text.
    """
    handed_over = asyncio.Event()  # set once the request's headers are written

    async def headers_sent(*_: object) -> None:
        handed_over.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(headers_sent)
    sent = {**(headers or {}), **({"Content-Type": "application/json"} if json_body is not None else {})}
    try:
        async with aiohttp.ClientSession(trace_configs=[trace]) as session, session.request(
                method, url, json=json_body, headers=sent,
                timeout=aiohttp.ClientTimeout(total=timeout)) as reply:
            return reply.status, await reply.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        if handed_over.is_set():
            raise InDoubtDelivery(f"{name}: {type(exc).__name__} after the request was sent") from None
        raise TransientDelivery(f"{name}: {type(exc).__name__}") from None


def _check_robot(name: str, body: bytes) -> None:
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        raise PermanentDelivery(f"{name}: answer is not JSON") from None
    code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
    if code in _RATE_LIMITED:
        raise TransientDelivery(f"{name}: rate limited (errcode {code})")
    if code:
        raise PermanentDelivery(f"{name}: errcode {code}")
