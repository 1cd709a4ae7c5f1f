"""Request signing v2 over real HTTP (aiohttp's test server on intake's faust web app): method, path,
channel, timestamp, nonce, key id, content type and the body's SHA-256 are signed; a nonce is
taken once within the window (Redis ``SET NX EX``), so a captured request cannot be replayed,
not even with a new Idempotency-Key; key ids rotate secrets; v1 passes only while
INTAKE_SIGNING_V1=accept; a nonce store that does not answer is a 503, never a 401."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.common.policy import load_policy
from services.intake import auth
from services.intake.adapters import RedisRegistrations
from services.intake.app import build
from services.intake.ports import Registrations
from services.intake.settings import IntakeSettings
from tests.fakes import DictRegistrations, DictTimelines, RecordingPublisher
from tests.harness import free_port

OLD, NEW = "web-form-secret-of-2026-11", "web-form-secret-of-2026-12"
SECRETS = {"web_form": {"2026-11": OLD, "2026-12": NEW}, "*": "catch-all-secret-0123456789"}
PATH = "/v1/inbound/web_form"
Post = Callable[..., Awaitable[tuple[int, Any]]]


def form(n: int = 0) -> bytes:
    return json.dumps({"form_id": f"f-{uuid.uuid4().hex}", "email": "w@example.com",
                       "description": f"The blender broke on day {n}"}).encode()


def v2(body: bytes, *, secret: str = NEW, key_id: str = "2026-12", path: str = PATH,
       channel: str = "web_form", content_type: str = "application/json", at: float | None = None,
       ) -> dict[str, str]:
    """Headers of a v2-signed request (as signed: a test may then tamper with the request)."""
    return {"Content-Type": content_type, **auth.sign(
        secret.encode(), body, key_id=key_id, method="POST", path=path, channel=channel,
        content_type=content_type, now=time.time() if at is None else at)}


def serve(tmp_path: Path, scenario: Callable[[Post, RecordingPublisher], Awaitable[None]], *,
          registrations: Registrations | None = None, **env: str) -> None:
    """Given intake over fakes (or the given registrations), signatures required, run the scenario."""
    settings = IntakeSettings(**{"COMPLAINTS_DATA_DIR": str(tmp_path), "DESK_JWT_SECRET": "j" * 32,
                                 "INTAKE_SIGNING_SECRETS": SECRETS, **env})
    publisher = RecordingPublisher()
    app = build(settings, load_policy(), publisher=publisher,
                registrations=registrations or DictRegistrations(), timelines=DictTimelines(),
                registry=CollectorRegistry())

    async def go() -> None:
        async with TestClient(TestServer(app.web.web_app)) as client:
            async def post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
                response = await client.post(path, data=body, headers=headers)
                text = await response.text()
                return response.status, json.loads(text) if text else None

            await scenario(post, publisher)

    asyncio.run(go())


def registered(publisher: RecordingPublisher) -> int:
    return len(publisher.of_type("complaint.registered"))


def test_a_captured_request_replayed_with_a_new_idempotency_key_is_refused(tmp_path: Path) -> None:
    async def scenario(post: Post, publisher: RecordingPublisher) -> None:
        # Given a signed web form that registered a complaint
        body = form()
        headers = v2(body)
        status, first = await post(PATH, body, {**headers, "Idempotency-Key": "k-1"})
        assert status == 202, first
        # When an eavesdropper replays it byte for byte, and again with a new Idempotency-Key
        again = await post(PATH, body, {**headers, "Idempotency-Key": "k-1"})
        fresh_key = await post(PATH, body, {**headers, "Idempotency-Key": "k-2"})
        # Then both replays are refused, and only the one complaint exists
        for status, answer in (again, fresh_key):
            assert status == 401 and "replayed" in answer["detail"], answer
        assert registered(publisher) == 1
        # And the integration's own retry, signed afresh (a new nonce), is the same complaint
        status, retry = await post(PATH, body, {**v2(body), "Idempotency-Key": "k-1"})
        assert (status, retry["complaint_id"], retry["duplicate"]) == (202, first["complaint_id"], True)

    serve(tmp_path, scenario)


def test_a_timestamp_ahead_of_the_clock_is_refused_beyond_the_skew(tmp_path: Path) -> None:
    async def scenario(post: Post, publisher: RecordingPublisher) -> None:
        # Given INTAKE_SIGNATURE_MAX_SKEW=5
        body = form()
        # When a request claims to be sent a minute from now, Then it is refused
        status, answer = await post(PATH, body, v2(body, at=time.time() + 60))
        assert status == 401 and "ahead" in answer["detail"], answer
        # (the past window is INTAKE_SIGNATURE_MAX_AGE: a request 10 min old is refused too)
        status, answer = await post(PATH, body, v2(body, at=time.time() - 600))
        assert status == 401 and "window" in answer["detail"], answer
        # And one a second ahead (a client clock slightly fast) is accepted
        status, answer = await post(PATH, body, v2(body, at=time.time() + 1))
        assert status == 202, answer
        assert registered(publisher) == 1

    serve(tmp_path, scenario, INTAKE_SIGNATURE_MAX_SKEW="5", INTAKE_SIGNATURE_MAX_AGE="300")


def test_either_key_id_of_a_rotation_is_accepted_and_no_other(tmp_path: Path) -> None:
    async def scenario(post: Post, publisher: RecordingPublisher) -> None:
        # Given web_form keys 2026-11 (old) and 2026-12 (new) configured during a rotation
        # When one integration signs with the old key and one with the new
        for secret, kid in ((OLD, "2026-11"), (NEW, "2026-12")):
            body = form()
            status, answer = await post(PATH, body, v2(body, secret=secret, key_id=kid))
            assert status == 202, answer
        # Then both pass; a key id naming the other key's secret, an unknown key id, and the
        # catch-all's secret (web_form has keys of its own) do not
        for secret, kid, reason in ((OLD, "2026-12", "does not match"), (NEW, "2027-01", "unknown key id"),
                                    ("catch-all-secret-0123456789", "default", "unknown key id")):
            body = form()
            status, answer = await post(PATH, body, v2(body, secret=secret, key_id=kid))
            assert status == 401 and reason in answer["detail"], answer
        assert registered(publisher) == 2

    serve(tmp_path, scenario)


def test_a_signer_uses_the_last_listed_key_id(tmp_path: Path) -> None:
    from services.intake.signing import parse_secrets, sign_request

    headers = sign_request(f"http://intake{PATH}", "web_form", b"{}", content_type="application/json",
                           secrets=parse_secrets(json.dumps(SECRETS)), now=time.time())
    assert headers[auth.KEY_ID_HEADER] == "2026-12"


@pytest.mark.parametrize(("setting", "expected"), [({}, 401), ({"INTAKE_SIGNING_V1": "reject"}, 401),
                                                   ({"INTAKE_SIGNING_V1": "accept"}, 202)])
def test_v1_signatures_pass_only_while_the_setting_accepts_them(
        tmp_path: Path, setting: dict[str, str], expected: int) -> None:
    async def scenario(post: Post, publisher: RecordingPublisher) -> None:
        # Given a request signed the v1 way with one of the channel's secrets (no key id sent)
        body = form()
        headers = {"Content-Type": "application/json", **auth.sign_v1(OLD.encode(), body, now=time.time())}
        # When it is posted
        status, answer = await post(PATH, body, headers)
        # Then it passes only under INTAKE_SIGNING_V1=accept (default: reject, and the problem says so)
        assert status == expected, answer
        if expected == 401:
            assert "v1 signatures are no longer accepted" in answer["detail"]
            return
        # And even then the same bytes a second time are a replay
        status, answer = await post(PATH, body, headers)
        assert status == 401 and "replayed" in answer["detail"], answer
        assert registered(publisher) == 1

    serve(tmp_path, scenario, **setting)


def test_a_request_moved_to_another_content_type_path_or_channel_is_refused(tmp_path: Path) -> None:
    async def scenario(post: Post, publisher: RecordingPublisher) -> None:
        body = form()
        catch_all = {"secret": "catch-all-secret-0123456789", "key_id": "default"}
        tampered = [
            # signed as JSON, sent as text (another parser for the same bytes)
            (PATH, {**v2(body), "Content-Type": "text/plain"}),
            # signed for the app channel's path, sent to sms (both served by the catch-all)
            ("/v1/inbound/sms", v2(body, path="/v1/inbound/app", channel="app", **catch_all)),
            # signed for sms's channel but another path
            ("/v1/inbound/sms", v2(body, path="/v2/inbound/sms", channel="sms", **catch_all)),
            # a body changed after signing
            (PATH, v2(body[:-1] + b" }")),
        ]
        for path, headers in tampered:
            status, answer = await post(path, body, headers)
            assert status == 401 and "does not match" in answer["detail"], (path, answer)
        # And the untampered request passes
        status, answer = await post(PATH, body, v2(body))
        assert status == 202, answer
        assert registered(publisher) == 1

    serve(tmp_path, scenario)


def test_a_nonce_store_that_does_not_answer_is_a_503_not_a_401(tmp_path: Path) -> None:
    async def scenario(post: Post, publisher: RecordingPublisher) -> None:
        # When a well-signed request comes while Redis does not answer
        body = form()
        status, answer = await post(PATH, body, v2(body))
        # Then it is "try again" (503 with Retry-After), not "you are not who you say" (401)
        assert status == 503, answer
        assert registered(publisher) == 0
        await dead.aclose()

    # Given intake whose Redis is a port nobody listens on
    dead = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    serve(tmp_path, scenario, registrations=RedisRegistrations(dead, prefix="nobody:"))


@pytest.mark.integration
def test_nonces_live_in_redis_under_the_prefix_for_the_window(tmp_path: Path, redis_url: str,
                                                              redis_prefix: str) -> None:
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"

    async def scenario(post: Post, publisher: RecordingPublisher) -> None:
        # Given intake on a real Redis; When a signed request is posted twice
        body = form()
        headers = v2(body)
        first, second = await post(PATH, body, headers), await post(PATH, body, headers)
        # Then the first registers and the replay is refused
        assert (first[0], second[0]) == (202, 401), (first, second)
        # And the nonce is one key under the prefix, expiring after the window and the skew
        try:
            key = f"{prefix}intake:nonce:web_form:2026-12:{headers[auth.NONCE_HEADER]}"
            assert 0 < await client.ttl(key) <= 300 + 30 + 1
        finally:
            await client.aclose()

    client = aioredis.from_url(redis_url)
    serve(tmp_path, scenario, registrations=RedisRegistrations(client, prefix=prefix))


def test_the_documented_test_vector_holds() -> None:
    # Given the example of docs/signing.md, When it is signed and checked, Then the values agree
    body = b'{"description": "The kettle leaks", "email": "w@example.com"}'
    headers = auth.sign(b"web-form-secret-of-2026-12", body, key_id="2026-12", method="POST", path=PATH,
                        channel="web_form", content_type="application/json", now=1795000000,
                        nonce="b3JkZXItNDIxMC1hdHRlbXB0LTE")
    signature = "v2=468549618c40ec109cd459946b5cba672d1e45b3af500f29d89642577d4900c0"
    assert headers[auth.SIGNATURE_HEADER] == signature
    assert signature in Path("docs/signing.md").read_text(encoding="utf-8")
    ring = {"web_form": {"2026-12": b"web-form-secret-of-2026-12"}}
    assert auth.verify(ring, {**headers, "Content-Type": "application/json"}, body, channel="web_form",
                       method="POST", path=PATH, now=1795000010, max_age=300, max_skew=30).version == 2
