"""Intake's staff endpoint over real HTTP (aiohttp's test server on intake's faust web app), over
fakes: GET /v1/complaints/{id} needs a staff token and the desk's read rule, records the read on
complaints.audit; staff steps are the desk's (no POST .../events here); a customer's survey
answer still comes in on the signed channel, with no staff token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from schemas.events import ComplaintRouted, Level, RoutingDecision, Severity
from services.common.policy import load_policy
from services.desk.auth import mint
from services.intake.app import build
from services.intake.settings import IntakeSettings
from tests.fakes import DictRegistrations, DictTimelines, RecordingPublisher

SECRET = "intake-staff-test-secret-of-32-chars!"
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
Call = Callable[..., Awaitable[tuple[int, dict[str, str], Any]]]


def token(sub: str, *roles: str, department: str | None = "quality", secret: str = SECRET,
          ttl: float = 600) -> str:
    return mint(secret.encode(), sub=sub, roles=list(roles), department=department,
                ttl=timedelta(seconds=ttl), now=time.time())


def serve(tmp_path: Path, scenario: Callable[[Call, str], Awaitable[None]]) -> RecordingPublisher:
    """Given intake over fakes with a web-form complaint routed to ann of quality, run the scenario."""
    settings = IntakeSettings(**{"COMPLAINTS_DATA_DIR": str(tmp_path), "DESK_JWT_SECRET": SECRET,
                                 "INTAKE_REQUIRE_SIGNATURES": "false"})
    publisher, timelines = RecordingPublisher(), DictTimelines()
    app = build(settings, load_policy(), publisher=publisher, registrations=DictRegistrations(),
                timelines=timelines, registry=CollectorRegistry())

    async def go() -> None:
        async with TestClient(TestServer(app.web.web_app)) as client:
            async def call(method: str, path: str, bearer: str | None = None, body: Any = None,
                           ) -> tuple[int, dict[str, str], Any]:
                headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
                response = await client.request(method, path, json=body, headers=headers)
                text = await response.text()
                try:
                    parsed = json.loads(text) if text else None
                except ValueError:
                    parsed = text
                return response.status, dict(response.headers), parsed

            status, _, accepted = await call("POST", "/v1/inbound/web_form", body={
                "form_id": "f-1", "description": "The blender broke on day one", "email": "w@example.com"})
            assert status == 202, accepted
            cid = accepted["complaint_id"]
            routed = ComplaintRouted.new(RoutingDecision(
                complaint_id=cid, received_at=T0, code="PQ-01", severity=Severity.general,
                department="quality", level=Level.L1, handler="ann", first_contact_owner="web-desk",
                reasons=["routed"]),
                source="router", time=datetime.now(UTC) + timedelta(seconds=1), subject=cid)
            await timelines.add(cid, routed.id, routed.to_bytes())
            await scenario(call, cid)

    asyncio.run(go())
    return publisher


@pytest.mark.parametrize("bad", [None, "not-a-jwt", token("ann", "handler", secret="another-secret-of-32-chars-long!!"),
                                 token("ann", "handler", ttl=-120)])
def test_reading_a_case_without_a_valid_staff_token_is_a_401(tmp_path: Path, bad: str | None) -> None:
    async def scenario(call: Call, cid: str) -> None:
        # When the case is read with no token, garbage, another key's or an expired one
        status, headers, body = await call("GET", f"/v1/complaints/{cid}", bad)
        # Then 401, a problem document with a Bearer challenge
        assert (status, body["status"]) == (401, 401)
        assert headers["Content-Type"].startswith("application/problem+json")
        assert headers["WWW-Authenticate"].startswith("Bearer")

    assert serve(tmp_path, scenario).of_type("staff.accessed") == []  # and nothing was recorded


@pytest.mark.parametrize(("who", "rule"), [
    (("bob", "handler", "quality"), "case_scope"),        # a colleague's case
    (("sam", "handler", "billing"), "case_scope"),        # another department's
    (("hb", "department_head", "billing"), "case_scope"),
    (("rita", "reviewer", "review"), "case_scope"),       # not on the review queue
    (("x", "janitor", "quality"), "known_role"),
])
def test_the_desks_read_rule_refuses_with_403_naming_it(tmp_path: Path, who: tuple[str, str, str],
                                                        rule: str) -> None:
    async def scenario(call: Call, cid: str) -> None:
        status, _, body = await call("GET", f"/v1/complaints/{cid}", token(who[0], who[1], department=who[2]))
        assert (status, body["rule"]) == (403, rule)

    assert serve(tmp_path, scenario).of_type("staff.accessed") == []


def test_staff_who_may_read_get_the_state_and_each_read_is_recorded(tmp_path: Path) -> None:
    states: list[Any] = []

    async def scenario(call: Call, cid: str) -> None:
        for who in (("ann", "handler", "quality"), ("hq", "department_head", "quality"),
                    ("al", "auditor", None)):
            status, _, body = await call("GET", f"/v1/complaints/{cid}", token(who[0], who[1], department=who[2]))
            assert status == 200, body
            states.append(body)
        assert (await call("GET", "/v1/complaints/NOPE", token("sue", "supervisor")))[0] == 404

    records = serve(tmp_path, scenario).of_type("staff.accessed")
    assert {s["handler"] for s in states} == {"ann"} and states[0]["status"] == "routed"
    assert [(r.data.actor, r.data.granted_by, r.data.kind) for r in records] == [
        ("ann", "handler:booked", "case_viewed"), ("hq", "department_head:department", "case_viewed"),
        ("al", "auditor:all", "case_viewed")]
    assert "w@example.com" not in "".join(r.model_dump_json() for r in records)


def test_staff_steps_are_the_desks_and_the_customers_answer_needs_no_staff_token(tmp_path: Path) -> None:
    answers: list[Any] = []

    async def scenario(call: Call, cid: str) -> None:
        # When someone posts a step to intake, even with a supervisor's token
        answers.append(await call("POST", f"/v1/complaints/{cid}/events", token("sue", "supervisor"),
                                  body={"action": "resolved", "actor": "sue", "result": "done"}))
        # And the customer answers the survey on the signed channel, with no staff token
        answers.append(await call("POST", "/v1/inbound/survey_reply",
                                  body={"complaint_id": cid, "score": 2, "survey_id": "S-1"}))

    published = serve(tmp_path, scenario)
    refused, survey = answers
    # Then intake has no such endpoint (the desk's POST /v1/desk/cases/{id}/actions replaces it)
    assert refused[0] in (404, 405)
    # And the answer is a satisfaction event of the customer
    assert (survey[0], survey[2]["recorded"]) == (202, "case_event")
    (event,) = published.of_type("case.updated")
    assert (event.data.action.value, event.data.actor, event.data.score) == ("satisfaction", "customer", 2)
