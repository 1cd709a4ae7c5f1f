"""Replies on the customer's own channel: WeChat customer-service messages, platform replies.

A customer who came by WeChat, a social post or a review left no e-mail or phone: they are
answered where they wrote, when the channel allows it.

- ``WeChatTransport``: the official account's customer-service message API
  (``POST {base}/cgi-bin/message/custom/send?access_token=...``, a text message to the sender's
  openid), its access token from ``/cgi-bin/token`` (or ``/cgi-bin/stable_token``) kept until it
  expires. WeChat lets an account write to a follower only within 48 hours of their last
  message and only so many times (errcodes 45015, 45047); those, an unfollow (43004) or an openid
  not of this account (40003) raise ``Unreachable``: the dispatcher turns the message into a
  call-back task. A token WeChat calls invalid or expired (40001, 40014, 42001) is fetched again
  once and the message sent again.
- ``PlatformReplyTransport``: a reply to the original post or review through a webhook per
  platform (the company's connector to Weibo, Dianping ...), with an ``Idempotency-Key``.

Openids, tokens, the app secret and message texts are never logged, nor put in an exception's
text (which the records carry): only error codes and HTTP statuses are.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from schemas.events import NotificationKind
from services.notifier.messages import Notification
from services.notifier.transports import (
    HttpConfig,
    InDoubtDelivery,
    NoTransport,
    PermanentDelivery,
    TransientDelivery,
    Unreachable,
    request,
)

# ---- no transport: the call-back queue ---------------------------------------------------


class CallbackQueue:
    """The ``callback`` queue's transport, which takes nothing: a customer message queued there
    (no contact; or their channel's reply transport not configured) raises ``NoTransport`` when
    due, and the dispatcher turns it into a call-back task for the first-contact owner."""

    name = "callback"
    idempotent = True  # it sends nothing: one left in doubt is just tried again

    async def send(self, note: Notification) -> None:
        if note.transport == "none":
            raise NoTransport("no contact address, and no reply route on the customer's channel",
                              why="no_contact")
        where = "NOTIFIER_WECHAT" if note.transport == "wechat" else (
            f"NOTIFIER_PLATFORMS.{note.address.partition(':')[0]}")
        raise NoTransport(f"the customer's channel has no transport configured ({where})",
                          why="not_configured")


# ---- WeChat official account: customer-service messages --------------------------------

# errcode -> why the customer cannot get this message on WeChat (not our fault: a call-back task)
UNREACHABLE = {
    45015: "the customer's 48-hour customer-service window has closed (response out of time limit)",
    45047: "the account's messages to this customer in their 48-hour window are used up",
    43004: "the customer does not follow the official account",
    43019: "the customer is on the account's blacklist",
    40003: "the openid is not of this official account",
}
TOKEN_REFUSED = frozenset({40001, 40014, 42001})  # access token invalid, not the latest, or expired
BUSY = frozenset({-1, 45009, 45011})  # system busy, daily or per-minute quota reached: later


class WeChatConfig(BaseModel):
    """NOTIFIER_WECHAT: the official account whose followers are answered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    appid: str = Field(pattern=r"^wx[0-9A-Za-z]{16}$", description="The official account's AppID.")
    secret: SecretStr = Field(min_length=16, description="Its AppSecret.")
    base_url: str = Field(default="https://api.weixin.qq.com", pattern=r"^https?://[^?#\s]+$",
                          description="The API's origin (a local fake in tests, a proxy for egress).")
    token_api: Literal["token", "stable_token"] = Field(
        default="token", description="token: /cgi-bin/token, each fetch replaces the account's token; "
        "stable_token: /cgi-bin/stable_token, every caller gets the same one until it expires (for more "
        "than one notifier instance, or when another system also fetches the account's token).")
    timeout: float = Field(default=10.0, gt=0, le=120)
    token_margin: float = Field(default=300.0, ge=0, le=3600,
                                description="Seconds before its expiry a token is fetched anew.")


class WeChatTransport:
    """Text customer-service messages to a follower's openid (the notification's opened address)."""

    name = "wechat"

    def __init__(self, config: WeChatConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = config, clock
        self._token: tuple[str, float] | None = None  # (token, monotonic time it is good until)
        self._lock = asyncio.Lock()  # one fetch at a time: concurrent sends share it

    async def send(self, note: Notification) -> None:
        if note.transport != "wechat":
            raise PermanentDelivery(f"wechat cannot deliver a {note.transport} notification")
        token = await self.token()
        code = await self._post(note, token)
        if code in TOKEN_REFUSED:  # expired early, or replaced by another fetch: once more, anew
            token = await self.token(refused=token)
            code = await self._post(note, token)
            if code in TOKEN_REFUSED:
                raise TransientDelivery(f"wechat: access token refused again, fetched anew (errcode {code})")
        if code == 0:
            return
        if code in UNREACHABLE:
            raise Unreachable(f"wechat: {UNREACHABLE[code]} (errcode {code})")
        if code in BUSY:
            raise TransientDelivery(f"wechat: busy or over quota (errcode {code})")
        raise PermanentDelivery(f"wechat: message refused (errcode {code})")

    async def token(self, *, refused: str | None = None) -> str:
        """The cached access token, fetched when there is none, it is about to expire, or it is
        ``refused`` (a send was answered 'invalid token'; a token fetched since is kept)."""
        async with self._lock:
            held = self._token
            if held is not None and held[0] != refused and self.clock() < held[1]:
                return held[0]
            token, expires_in = await self._fetch(force=False)
            if token == refused:  # the stable token WeChat refused: force a new one (20 a day at most)
                token, expires_in = await self._fetch(force=True)
            self._token = (token, self.clock() + max(0.0, expires_in - self.config.token_margin))
            return token

    async def _fetch(self, *, force: bool) -> tuple[str, float]:
        c = self.config
        if c.token_api == "stable_token":  # noqa: S105 - the endpoint's name, not a secret
            status, body = await request("wechat token", "POST", f"{c.base_url}/cgi-bin/stable_token",
                                         json_body={"grant_type": "client_credential", "appid": c.appid,
                                                    "secret": c.secret.get_secret_value(),
                                                    "force_refresh": force}, timeout=c.timeout)
        else:
            query = urlencode({"grant_type": "client_credential", "appid": c.appid,
                               "secret": c.secret.get_secret_value()})
            status, body = await request("wechat token", "GET", f"{c.base_url}/cgi-bin/token?{query}",
                                         timeout=c.timeout)
        answer = _answer("wechat token", status, body)
        code = _errcode(answer)
        if code in BUSY:
            raise TransientDelivery(f"wechat: token fetch busy (errcode {code})")
        if code:  # a wrong AppID or AppSecret, a server not on the IP whitelist ...: configuration
            raise PermanentDelivery(f"wechat: access token refused (errcode {code})")
        token, expires_in = answer.get("access_token"), answer.get("expires_in", 7200)
        if not isinstance(token, str) or not token or not isinstance(expires_in, int | float):
            raise TransientDelivery("wechat: token answer without access_token")
        return token, float(expires_in)

    async def _post(self, note: Notification, token: str) -> int:
        """Send once; WeChat's errcode (0: delivered). No answer after the request went: in doubt."""
        url = f"{self.config.base_url}/cgi-bin/message/custom/send?{urlencode({'access_token': token})}"
        payload = {"touser": note.address, "msgtype": "text",
                   "text": {"content": f"{note.subject}\n{note.body}"}}
        status, body = await request("wechat", "POST", url, json_body=payload, timeout=self.config.timeout)
        # an unreadable answer to a message that went: it may or may not have been delivered
        return _errcode(_answer("wechat", status, body, unreadable=InDoubtDelivery))


def _answer(name: str, status: int, body: bytes, *,
            unreadable: type[Exception] = TransientDelivery) -> dict[str, Any]:
    """WeChat's JSON answer (its errors come as HTTP 200 with an errcode)."""
    if status in (408, 425, 429) or status >= 500:
        raise TransientDelivery(f"{name}: HTTP {status}")
    if status >= 300:
        raise PermanentDelivery(f"{name}: HTTP {status}")
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        raise unreadable(f"{name}: answer is not JSON") from None
    if not isinstance(answer, dict):
        raise unreadable(f"{name}: answer is not a JSON object")
    return answer


def _errcode(answer: dict[str, Any]) -> int:
    code = answer.get("errcode", 0)
    return code if isinstance(code, int) and not isinstance(code, bool) else -1


# ---- social and review platforms: a reply to the post ------------------------------------

CUSTOMER_KINDS = (NotificationKind.acknowledgement, NotificationKind.result, NotificationKind.revisit,
                  NotificationKind.reopened)


class PlatformConfig(HttpConfig):
    """One platform's reply webhook (NOTIFIER_PLATFORMS' value): ``url``, ``token``, ``timeout``,
    and the kinds of message posted as replies (a reply is usually public: leave out ``result``
    where results may name what the customer would not have shown)."""

    kinds: list[NotificationKind] = Field(default_factory=lambda: list(CUSTOMER_KINDS), min_length=1)


class PlatformReplyTransport:
    """POSTs ``{"platform", "post_id", "kind", "complaint_id", "text", "reference"}`` to the
    platform's webhook, which replies to the post (``Idempotency-Key``: the notification id).

    2xx: posted. 403 (replies refused), 404 and 410 (the post is gone): ``Unreachable``. 408, 425,
    429, 5xx: later. Other 4xx: permanent (our request is wrong).
    """

    def __init__(self, platform: str, config: PlatformConfig) -> None:
        self.platform, self.config = platform, config
        self.name = f"platform:{platform}"

    async def send(self, note: Notification) -> None:
        if note.transport != "platform":
            raise PermanentDelivery(f"{self.name} cannot deliver a {note.transport} notification")
        if note.kind not in self.config.kinds:
            raise Unreachable(f"{self.name}: {note.kind.value} messages are not posted as replies (kinds)")
        platform, _, post_id = note.address.partition(":")
        if platform != self.platform or not post_id:
            raise PermanentDelivery(f"{self.name}: the notification names another platform or no post")
        headers = {"Idempotency-Key": note.notification_id}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        payload = {"platform": platform, "post_id": post_id, "kind": note.kind.value,
                   "complaint_id": note.complaint_id, "language": note.language,
                   "text": f"{note.subject}\n{note.body}", "reference": note.notification_id}
        status, _ = await request(self.name, "POST", self.config.url, json_body=payload, headers=headers,
                                  timeout=self.config.timeout)
        if status in (408, 425, 429) or status >= 500:
            raise TransientDelivery(f"{self.name}: HTTP {status}")
        if status in (403, 404, 410):
            raise Unreachable(f"{self.name}: the post cannot be answered (HTTP {status})")
        if status >= 300:
            raise PermanentDelivery(f"{self.name}: HTTP {status}")
