"""Transports of the notifier: SMTP e-mail, a JSON SMS gateway, chat webhooks.

Every transport raises ``TransientDelivery`` (try again later: the server is down, busy
or timed out) or ``PermanentDelivery`` (this message can never go: a refused address,
a rejected payload); anything it returns from is delivered. Each carries the
notification id so that the far side can recognise a repeat: the e-mail's Message-ID,
the gateway's ``Idempotency-Key`` header. Messages of one complaint thread together in
mail clients (``In-Reply-To`` / ``References`` name the complaint).

Addresses and message texts are personal data: they are never logged.
"""

from __future__ import annotations

import asyncio
import random
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from services.notifier.logic import Notification


class TransientDelivery(Exception):
    """The message may go later: retry with back-off."""


class PermanentDelivery(Exception):
    """The message can never go as it is: record the failure and dead-letter it."""


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

    def _send(self, note: Notification) -> None:
        c = self.config
        try:
            if c.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout,
                                                      context=self._context())
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
            with smtp:
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
                smtp.send_message(email_message(note, c))
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

    async def send(self, note: Notification) -> None:
        if note.transport != "email":
            raise PermanentDelivery(f"smtp cannot deliver a {note.transport} notification")
        await asyncio.to_thread(self._send, note)


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
    """POSTs JSON; ``kind`` chooses the body: a generic SMS gateway or a chat robot."""

    def __init__(self, name: str, config: HttpConfig, kind: Literal["sms"] | ChatKind,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.name, self.config, self.kind = name, config, kind
        self._session = session

    def payload(self, note: Notification) -> dict[str, Any]:
        if self.kind == "sms":
            return {"to": note.address, "text": f"{note.subject}: {note.body}",
                    "reference": note.notification_id}
        return chat_payload(self.kind, note)

    async def send(self, note: Notification) -> None:
        headers = {"Idempotency-Key": note.notification_id, "Content-Type": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        session = self._session or aiohttp.ClientSession()
        try:
            async with session.post(self.config.url, json=self.payload(note), headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=self.config.timeout)) as reply:
                body = await reply.read()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientDelivery(f"{self.name}: {type(exc).__name__}") from None
        finally:
            if self._session is None:
                await session.close()
        if status in (408, 425, 429) or status >= 500:
            raise TransientDelivery(f"{self.name}: HTTP {status}")
        if status >= 400:
            raise PermanentDelivery(f"{self.name}: HTTP {status}")
        if self.kind in ("wecom", "dingtalk"):
            _check_robot(self.name, body)


def _check_robot(name: str, body: bytes) -> None:
    import json

    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        raise PermanentDelivery(f"{name}: answer is not JSON") from None
    code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
    if code in _RATE_LIMITED:
        raise TransientDelivery(f"{name}: rate limited (errcode {code})")
    if code:
        raise PermanentDelivery(f"{name}: errcode {code}")
