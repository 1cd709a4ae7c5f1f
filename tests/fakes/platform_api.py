"""A local fake of a platform's reply webhook (the company's connector to Weibo, Dianping ...).

A real HTTP server (aiohttp, 127.0.0.1, a free port): ``POST /replies`` with the bearer token
and ``{"platform", "post_id", "kind", "complaint_id", "language", "text", "reference"}`` posts a
reply to the post and answers 201 ``{"reply_id"}``; the same ``Idempotency-Key`` again answers
200 with the first reply's id and posts nothing (a resend is harmless). Without the token 401; a
body without platform, post_id or text 422; a post in ``deleted`` 404; one in ``closed`` (replies
turned off, the author blocked the account) 403. ``faults`` scripts the next answers: an HTTP
status, or ``"drop"`` (the connection is cut once the request was read).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes.wechat_api import HttpFake

TOKEN = "fake-platform-token-0123456789"  # noqa: S105 - the fake's own


@dataclass
class FakePlatform:
    token: str = TOKEN
    deleted: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    faults: list[int | str] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)  # posted, once each
    requests: int = 0
    by_key: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> reply id
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> FakePlatform:
        app = web.Application()
        app.router.add_post("/replies", self._reply)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/replies"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakePlatform:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def _reply(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests += 1
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            assert isinstance(fault, int)
            return web.json_response({"error": "scripted"}, status=fault)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response({"error": "not JSON"}, status=400)
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body[k]
                                                 for k in ("platform", "post_id", "text")):
            return web.json_response({"error": "platform, post_id and text are required"}, status=422)
        key = request.headers.get("Idempotency-Key")
        if key and key in self.by_key:
            return web.json_response({"reply_id": self.by_key[key]}, status=200)
        if body["post_id"] in self.deleted:
            return web.json_response({"error": "post not found"}, status=404)
        if body["post_id"] in self.closed:
            return web.json_response({"error": "replies are closed"}, status=403)
        reply_id = secrets.token_hex(6)
        if key:
            self.by_key[key] = reply_id
        self.replies.append({**body, "reply_id": reply_id, "idempotency_key": key})
        return web.json_response({"reply_id": reply_id}, status=201)


# the fake serves like the others (tests/test_fakes_typecheck.py)
_platform: HttpFake = FakePlatform()
