"""Bodies intake cannot read are 4xx problem documents, never a 500, on HTTP; dead letters on Kafka.

Over real HTTP (aiohttp's test server on intake's and the desk's faust web apps) and over fakes:
deeply nested JSON used to raise RecursionError (a 500), a body without Content-Type fell into
a branch that never ran, and numbers, times and character references past what the standard
library converts raised ValueError or OverflowError from inside the rules.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from services.common.boundary import Boundary
from services.common.policy import load_policy
from services.intake.app import build
from services.intake.handlers import Intake
from services.intake.metrics import IntakeMetrics
from services.intake.settings import IntakeSettings
from tests.fakes import DictRegistrations, DictTimelines, FixedClock, RecordingPublisher

PROBLEM = "application/problem+json"
Post = Callable[..., Awaitable[tuple[int, str, Any]]]
FORM = {"form_id": "F-1", "description": "The blender broke on day one", "email": "w@example.com"}


def posting(tmp_path: Path, scenario: Callable[[Post], Awaitable[None]]) -> RecordingPublisher:
    """Run ``scenario`` against intake's HTTP API over fakes (signatures off: the body is the subject)."""
    settings = IntakeSettings(**{"COMPLAINTS_DATA_DIR": str(tmp_path), "INTAKE_REQUIRE_SIGNATURES": "false",
                                 "DESK_JWT_SECRET": "intake-parsing-test-secret-32-chars!",
                                 "INTAKE_IDENTITY_KEY": "intake-parsing-test-identity-key"})
    publisher = RecordingPublisher()
    app = build(settings, load_policy(), publisher=publisher, registrations=DictRegistrations(),
                timelines=DictTimelines(), registry=CollectorRegistry())

    async def go() -> None:
        async with TestClient(TestServer(app.web.web_app)) as client:
            async def post(channel: str, body: bytes, content_type: str | None = "application/json",
                           ) -> tuple[int, str, Any]:
                headers = {"Content-Type": content_type} if content_type else {}
                response = await client.post(f"/v1/inbound/{channel}", data=body, headers=headers,
                                             skip_auto_headers=["Content-Type"])
                text = await response.text()
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = text
                return response.status, response.headers.get("Content-Type", ""), parsed
            await scenario(post)

    asyncio.run(go())
    return publisher


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize(("body", "status"), [
    (nested(100_000), 400),   # past the JSON parser's limit: RecursionError, a 500, before
    (nested(1_200), 400),
    (b"[" * 50_000, 400),
    (json.dumps(FORM).encode()[:-1] + b', "x": ' + nested(150) + b"}", 422),  # readable; no channel nests so
    (json.dumps({**FORM, "x": [[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]}).encode(), 422),  # deep (ignored field)
    (b'{"description": ' + b"9" * 5000 + b"}", 400),  # an int past CPython's 4300 digits
    (b'{"description": "\\ud800 lone surrogate"}', 400),
])
def test_json_intake_cannot_read_is_a_4xx_problem(tmp_path: Path, body: bytes, status: int) -> None:
    async def scenario(post: Post) -> None:
        # When a web form arrives with a body that is not (usable) JSON
        answer, content_type, problem = await post("web_form", body)
        # Then it is answered with a problem document of the expected 4xx status
        assert answer == status, problem
        assert content_type == PROBLEM and problem["status"] == status and problem["detail"]
    posting(tmp_path, scenario)


def test_a_body_without_content_type_is_a_415_problem_naming_the_media_types(tmp_path: Path) -> None:
    async def scenario(post: Post) -> None:
        # When a well-formed web form comes without a Content-Type header
        status, content_type, problem = await post("web_form", json.dumps(FORM).encode(), content_type=None)
        # Then the answer is 415, naming what intake reads
        assert status == 415 and content_type == PROBLEM, problem
        assert problem["title"] == "Unsupported media type" and "application/json" in problem["detail"]
        # and with the header the same body registers
        status, _, accepted = await post("web_form", json.dumps(FORM).encode())
        assert status == 202, accepted
    posting(tmp_path, scenario)


@pytest.mark.parametrize(("channel", "payload", "field"), [
    ("social", {"platform": "weibo", "text": "Exploded", "audience": 10**30}, "audience"),
    ("web_form", {**FORM, "submitted_at": "0001-01-01T00:00:00+14:00"}, "time"),
    ("web_form", {**FORM, "purchase_time": "9999-12-31T23:59:59-14:00"}, "time"),
])
def test_numbers_and_times_out_of_range_are_a_422_problem(tmp_path: Path, channel: str,
                                                         payload: dict[str, Any], field: str) -> None:
    async def scenario(post: Post) -> None:
        # When a payload carries an integer past any count, or a time whose UTC is before year 1
        status, content_type, problem = await post(channel, json.dumps(payload).encode())
        # Then it is refused as invalid (before: OverflowError in the router, or a 500 here)
        assert status == 422 and content_type == PROBLEM, problem
        assert field in problem["detail"] or field in json.dumps(problem.get("errors", []))
    posting(tmp_path, scenario)


def test_a_character_reference_of_thousands_of_digits_registers(tmp_path: Path) -> None:
    async def scenario(post: Post) -> None:
        # When the description holds "&#" and 5000 digits (html.unescape raised ValueError: a 500)
        body = json.dumps({**FORM, "description": "Broken &#" + "1" * 5000 + "; kettle"}).encode()
        status, _, accepted = await post("web_form", body)
        # Then the complaint registers
        assert status == 202, accepted
    posting(tmp_path, scenario)


def test_nul_and_control_characters_never_reach_the_registered_complaint(tmp_path: Path) -> None:
    async def scenario(post: Post) -> None:
        # When a web form carries NUL (PostgreSQL's JSON refuses it: the archive dead-lettered
        # such complaints) and terminal escapes in its text, name, product and attachment name
        body = json.dumps({**FORM, "description": "Kettle\u0000 leaks \u001b[31mbadly", "name": "A\u0000B",
                           "product": "K\u00001", "attachments": [{"name": "p\u0000.jpg"}]}).encode()
        status, _, accepted = await post("web_form", body)
        assert status == 202, accepted
    publisher = posting(tmp_path, scenario)
    # Then the complaint registers without them
    (registered,) = [e for _, e in publisher.published if e.type == "complaint.registered"]
    raw = registered.to_bytes()
    assert b"\\u0000" not in raw and b"\\u001b" not in raw
    assert registered.data.description == "Kettle leaks [31mbadly" and registered.data.product == "K1"


def test_a_deeply_nested_record_on_the_inbound_topic_is_dead_lettered() -> None:
    # Given intake behind its consumer boundary (over fakes)
    publisher, registry = RecordingPublisher(), CollectorRegistry()
    intake = Intake(policy=load_policy(), publisher=publisher, registrations=DictRegistrations(),
                    timelines=DictTimelines(), clock=FixedClock(), random_bits=lambda: 7,
                    identity_secret=b"k" * 16, metrics=IntakeMetrics.create(registry))
    boundary = Boundary(service="intake", publisher=publisher, registry=registry)
    records = [b'{"specversion":"1.0","id":"n1","data":{"channel":"sms","payload":' + nested(depth) + b"}}"
               for depth in (150, 5_000)]

    async def handle(key: bytes | None, value: bytes) -> None:
        await intake.register(intake.decode(value), via="kafka")

    # When records nested past every parser's limit arrive (the dead letter's own look at the
    # record's subject raised RecursionError out of the boundary)
    for offset, record in enumerate(records):
        asyncio.run(boundary.run(handle, topic="complaints.inbound", partition=0, offset=offset, key=None,
                                 value=record))
    # Then each is dead-lettered with its bytes and a classified reason
    letters = [e.data for _, e in publisher.published]
    assert [letter.error_type for letter in letters] == ["ValidationError", "ValidationError"]
    assert [base64.b64decode(letter.original) for letter in letters] == records


# ---- the desk's JSON body -----------------------------------------------------------------

def test_the_desks_action_body_nested_too_deep_or_with_a_huge_number_is_a_400(tmp_path: Path) -> None:
    from services.desk.app import build as build_desk
    from services.desk.auth import mint
    from services.desk.settings import DeskSettings

    secret = "desk-parsing-test-secret-of-32-chars"
    settings = DeskSettings(**{"COMPLAINTS_DATA_DIR": str(tmp_path), "DESK_JWT_SECRET": secret,
                               "ARCHIVE_DATABASE_URL": f"sqlite:///{tmp_path / 'archive.sqlite3'}",
                               "INTAKE_IDENTITY_KEY": "desk-parsing-test-identity-key!!"})
    app = build_desk(settings, load_policy(), publisher=RecordingPublisher(),
                     clock=FixedClock(datetime(2026, 11, 23, tzinfo=UTC)))
    token = mint(secret.encode(), sub="sue", roles=["supervisor"], department=None,
                 ttl=timedelta(minutes=5), now=time.time())

    async def go() -> list[tuple[int, str, Any]]:
        answers = []
        async with TestClient(TestServer(app.web.web_app)) as client:
            for body in (b'{"action":' * 5000 + b"1" + b"}" * 5000, b'{"action": "note", "score": ' + b"9" * 5000
                         + b"}"):
                response = await client.post("/v1/desk/cases/C1/actions", data=body, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                answers.append((response.status, response.headers.get("Content-Type", ""),
                                json.loads(await response.text())))
        return answers

    # When a supervisor posts an action nested 5000 deep, or with a 5000-digit number
    # Then each is a 400 problem (RecursionError and ValueError made 500s)
    for status, content_type, problem in asyncio.run(go()):
        assert status == 400 and content_type == PROBLEM and problem["field"] == "(body)", problem
