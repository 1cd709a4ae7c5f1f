"""A local fake of the WeChat official account API: access tokens and customer-service messages.

A real HTTP server (aiohttp, 127.0.0.1, a free port) answering as the documented API does
(developers.weixin.qq.com: "Get access token", "Get stable access token", "Send customer
service messages"); tests/test_notifier_wechat.py holds it to those documents:

- ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`` -> ``{"access_token",
  "expires_in": 7200}``; a new token replaces the account's last one (which the real API keeps
  valid for a few minutes more: ``grace``); a wrong AppID 40013, a wrong AppSecret 40125 (the real
  API answers 40001 for some), another grant_type 40002.
- ``POST /cgi-bin/stable_token {"grant_type", "appid", "secret", "force_refresh"}`` -> the same
  token to every caller until it expires (``force_refresh``: a new one).
- ``POST /cgi-bin/message/custom/send?access_token=`` ``{"touser", "msgtype": "text", "text":
  {"content"}}`` -> ``{"errcode": 0, "errmsg": "ok"}``; no token 41001, an unknown or replaced
  one 40001, an expired one 42001; a body that is not JSON 47001; an openid not of the account
  40003; a former follower 43004; a follower whose last message is 48 hours old 45015; a sixth
  message in their window 45047; another msgtype 40008; empty content 44003; content over 2048
  bytes 45002.

Every answer is HTTP 200 with a JSON body, errors too (``errmsg`` ends with `` rid: ...`` as the
real ones do). ``faults`` scripts the next send answers: an errcode, ``"http500"``, or ``"drop"``
(the connection is cut once the request was read: a sender cannot know whether it went).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from aiohttp import web

APPID = "wx0123456789abcdef"
SECRET = "fake-app-secret-0123456789abcdef"  # noqa: S105 - the fake's own
WINDOW = 48 * 3600.0
WINDOW_MESSAGES = 5  # messages the account may send in the window a customer's message opens
TOKEN_SECONDS = 7200
MAX_CONTENT_BYTES = 2048

ERRMSG = {
    0: "ok", -1: "system error", 40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type", 40003: "invalid openid", 40008: "invalid message type",
    40013: "invalid appid", 40125: "invalid appsecret", 41001: "access_token missing",
    42001: "access_token expired", 43004: "require subscribe", 44003: "empty news data",
    45002: "content size out of limit", 45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit", 47001: "data format error",
}


class HttpFake(Protocol):
    """A fake remote API served on a free local port (``url`` once started)."""

    url: str

    async def start(self) -> HttpFake: ...

    async def stop(self) -> None: ...


@dataclass
class Follower:
    last_message: float  # when the customer last wrote (opens the 48-hour window)
    following: bool = True
    sent_in_window: int = 0


@dataclass
class FakeWeChat:
    """The account's state; ``start()`` serves it. ``clock`` is wall seconds (tests move it)."""

    appid: str = APPID
    secret: str = SECRET
    clock: Callable[[], float] = time.time
    grace: float = 0.0  # seconds a replaced /cgi-bin/token token still works
    followers: dict[str, Follower] = field(default_factory=dict)
    faults: list[int | str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)  # delivered messages: touser, content
    token_fetches: int = 0
    sends: int = 0  # send requests answered (any answer)
    tokens: dict[str, tuple[float, float]] = field(default_factory=dict)  # token -> (expires, replaced)
    stable: str | None = None
    url: str = ""
    _runner: web.AppRunner | None = None

    # ---- the tests' side ------------------------------------------------------------------

    def follower_wrote(self, openid: str, *, ago: float = 0.0) -> None:
        """The customer sent the account a message ``ago`` seconds ago (a fresh window)."""
        self.followers[openid] = Follower(last_message=self.clock() - ago)

    def expire_tokens(self) -> None:
        """Every token issued so far is past its expiry."""
        self.tokens = {t: (0.0, replaced) for t, (_, replaced) in self.tokens.items()}

    def replace_tokens(self) -> None:
        """Another system fetched the account's token: every one issued so far is replaced."""
        now = self.clock()
        self.tokens = {t: (exp, min(replaced, now)) for t, (exp, replaced) in self.tokens.items()}
        self.stable = None

    async def start(self) -> FakeWeChat:
        app = web.Application()
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_post("/cgi-bin/stable_token", self._stable_token)
        app.router.add_post("/cgi-bin/message/custom/send", self._send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeWeChat:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # ---- the API ---------------------------------------------------------------------------

    def _issue(self) -> str:
        token = secrets.token_urlsafe(48)
        self.tokens[token] = (self.clock() + TOKEN_SECONDS, float("inf"))
        return token

    def _credentials(self, grant: object, appid: object, secret: object) -> int:
        if grant != "client_credential":
            return 40002
        if appid != self.appid:
            return 40013
        return 40125 if secret != self.secret else 0

    async def _token(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        q = request.query
        code = self._credentials(q.get("grant_type"), q.get("appid"), q.get("secret"))
        if code:
            return _error(code)
        self.replace_tokens()  # a new /cgi-bin/token replaces the last one
        return web.json_response({"access_token": self._issue(), "expires_in": TOKEN_SECONDS})

    async def _stable_token(self, request: web.Request) -> web.Response:
        self.token_fetches += 1
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(47001)
        if not isinstance(body, dict):
            return _error(47001)
        code = self._credentials(body.get("grant_type"), body.get("appid"), body.get("secret"))
        if code:
            return _error(code)
        now = self.clock()
        live = self.stable is not None and self.tokens.get(self.stable, (0.0, 0.0))[0] > now
        if body.get("force_refresh") or not live:
            self.replace_tokens()
            self.stable = self._issue()
        assert self.stable is not None
        return web.json_response({"access_token": self.stable,
                                  "expires_in": int(self.tokens[self.stable][0] - now)})

    async def _send(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.sends += 1
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            if fault == "http500":
                return web.Response(status=500, text="internal error")
            assert isinstance(fault, int)
            return _error(fault)
        token, now = request.query.get("access_token"), self.clock()
        if not token:
            return _error(41001)
        if token not in self.tokens or self.tokens[token][1] + self.grace <= now:
            return _error(40001)
        if self.tokens[token][0] <= now:
            return _error(42001)
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(47001)
        if not isinstance(body, dict):
            return _error(47001)
        follower = self.followers.get(str(body.get("touser")))
        if follower is None:
            return _error(40003)
        if not follower.following:
            return _error(43004)
        if now - follower.last_message > WINDOW:
            return _error(45015)
        if body.get("msgtype") != "text":
            return _error(40008)
        text = body.get("text")
        content = text.get("content") if isinstance(text, dict) else None
        if not isinstance(content, str) or not content:
            return _error(44003)
        if len(content.encode()) > MAX_CONTENT_BYTES:
            return _error(45002)
        if follower.sent_in_window >= WINDOW_MESSAGES:
            return _error(45047)
        follower.sent_in_window += 1
        self.sent.append({"touser": body["touser"], "content": content})
        return web.json_response({"errcode": 0, "errmsg": "ok"})


def _error(code: int) -> web.Response:
    rid = secrets.token_hex(4)
    return web.json_response({"errcode": code, "errmsg": f"{ERRMSG.get(code, 'error')} rid: {rid}"})


# the fake serves like the others (tests/test_fakes_typecheck.py)
_wechat: HttpFake = FakeWeChat()
