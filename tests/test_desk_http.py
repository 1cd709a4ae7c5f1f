"""The staff API over real HTTP (aiohttp's test server on the desk's faust web app) against a
real archive database (SQLite, migrated with the archive's own migrations), publishing into a
recording publisher: 401 and 403 on every endpoint, the work lists, search, the case page and
its access record, actions with the actor from the token."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine, insert

from schemas.envelope import derived_id
from schemas.events import CaseAction, Contact
from services.archive.database import make_engine, upgrade
from services.archive.tables import cases, events, sla
from services.common.policy import load_policy
from services.desk.adapters import ArchiveReader
from services.desk.app import build
from services.desk.auth import mint
from services.desk.settings import DeskSettings
from services.intake.logic import customer_key
from tests.fakes import FixedClock, RecordingPublisher
from tests.postgres import fresh_database, postgres_url  # noqa: F401 - the session PostgreSQL

NOW = datetime(2026, 11, 23, 9, tzinfo=UTC)
SECRET = "desk-test-secret-of-thirty-two-chars!"
IDENTITY_KEY = "a-test-identity-key"
PHONE = "+8613800138000"


def case(cid: str, *, handler: str | None, department: str, review: bool = False,
         status: str = "open", received: datetime = NOW - timedelta(hours=1), **more: Any) -> dict[str, Any]:
    return {**dict.fromkeys(cases.c.keys()), "complaint_id": cid, "status": status, "channel": "phone",
            "nature": "complaint", "received_at": received, "registered_at": received, "code": "PQ-01",
            "department": department, "severity": "general", "level": "L1", "handler": handler,
            "review": review, "escalation_count": 0, "reopen_count": 0, "event_count": 1,
            "updated_at": NOW, "first_contact_owner": "desk-1", "contact_masked": "+86*****8000", **more}


def clock_row(cid: str, milestone: str, deadline: datetime | None, outcome: str = "open") -> dict[str, Any]:
    return {"complaint_id": cid, "milestone": milestone, "cycle": 1, "severity": "general",
            "clock": "calendar", "started_at": NOW - timedelta(hours=1), "deadline": deadline,
            "outcome": outcome, "warnings": 0, "last_event_time": NOW}


def event(cid: str, eid: str, action: str, actor: str, *, type_: str = "case.updated",
          minutes: int = 0, summary: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"event_id": eid, "complaint_id": cid, "topic": "complaints.lifecycle", "type": type_,
            "time": NOW - timedelta(minutes=60 - minutes), "actor": actor, "action": action,
            "causation_id": "inbound-1" if type_ == "complaint.registered" else None,
            "summary": summary or {}, "ingested_at": NOW}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The archive database the desk reads: a SQLite file, or a database of its own on the
    tests' PostgreSQL (the desk's queries run on both)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'archive.sqlite3'}"
        return
    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def archive(archive_url: str) -> Iterator[Engine]:
    """Given an archive: quality cases of ann and bob, unassigned ones, billing's, the review queue."""
    eng = make_engine(archive_url)
    upgrade(eng)
    key = customer_key(Contact(phone=PHONE), account=None, secret=IDENTITY_KEY.encode())
    with eng.begin() as conn:
        conn.execute(insert(cases), [
            case("A1", handler="ann", department="quality", customer_key=key),
            case("A2", handler="ann", department="quality"),
            case("A3", handler="ann", department="quality"),
            case("A4", handler="ann", department="quality", status="closed"),
            case("B1", handler="bob", department="quality"),
            case("U1", handler=None, department="quality", received=NOW - timedelta(hours=5)),
            case("U2", handler=None, department="quality", received=NOW - timedelta(hours=3)),
            case("X1", handler="sam", department="billing", customer_key=key),
            case("X2", handler="sam", department="billing"),
            case("R1", handler=None, department="review", review=True),
        ])
        conn.execute(insert(sla), [
            clock_row("A1", "resolve", NOW + timedelta(hours=5)),
            clock_row("A1", "respond", NOW - timedelta(minutes=10), outcome="met"),
            clock_row("A2", "respond", NOW - timedelta(minutes=5)),      # overdue
            clock_row("A3", "plan", NOW + timedelta(hours=1)),           # due soon
            clock_row("B1", "plan", NOW + timedelta(minutes=30)),
        ])
        conn.execute(insert(events), [
            event("A1", "reg-A1", "registered", "intake", type_="complaint.registered"),
            event("A1", "ack-A1", "acknowledged", "ann", minutes=10),
            event("A1", "prop-A1", "resolution_proposed", "ann", minutes=20),
            event("X1", "co-X1", "co_handler_added", "hb", minutes=5,
                  summary={"assignment": {"handler": "ann", "reason": "cross-department"}}),
        ])
    yield eng
    eng.dispose()


Call = Callable[..., Awaitable[tuple[int, dict[str, str], Any]]]


def serve(tmp_path: Path, archive: Engine, scenario: Callable[[Call], Awaitable[None]]
          ) -> RecordingPublisher:
    """Run the scenario against the desk's HTTP API; return what the desk published."""
    settings = DeskSettings(**{"COMPLAINTS_DATA_DIR": str(tmp_path), "DESK_JWT_SECRET": SECRET,
                               "ARCHIVE_DATABASE_URL": archive.url.render_as_string(hide_password=False), "INTAKE_IDENTITY_KEY": IDENTITY_KEY,
                               "DESK_PAGE_SIZE": "2"})
    publisher = RecordingPublisher()
    # the desk reads through the fixture's engine, which the fixture disposes
    app = build(settings, load_policy(), publisher=publisher, clock=FixedClock(NOW),
                reader=ArchiveReader(archive))

    async def go() -> None:
        async with TestClient(TestServer(app.web.web_app)) as client:
            async def call(method: str, path: str, token: str | None = None, body: Any = None,
                           **headers: str) -> tuple[int, dict[str, str], Any]:
                if token is not None:
                    headers["Authorization"] = f"Bearer {token}"
                data = json.dumps(body) if body is not None else None
                response = await client.request(method, path, data=data, headers=headers)
                text = await response.text()
                return response.status, dict(response.headers), json.loads(text) if text else None
            await scenario(call)

    asyncio.run(go())
    return publisher


def token(sub: str, *roles: str, department: str | None = "quality", secret: str = SECRET,
          ttl: float = 600, now: float | None = None) -> str:
    return mint(secret.encode(), sub=sub, roles=list(roles), department=department,
                ttl=timedelta(seconds=ttl), now=time.time() if now is None else now)


ENDPOINTS = [("GET", "/v1/desk/me"), ("GET", "/v1/desk/lists/mine"), ("GET", "/v1/desk/search?status=open"),
             ("GET", "/v1/desk/cases/A1"), ("POST", "/v1/desk/cases/A1/actions")]
BAD_TOKENS = {"none": None, "garbage": "not-a-jwt",
              "wrong key": token("ann", "handler", secret="another-secret-of-thirty-two-chars!!"),
              "expired": token("ann", "handler", now=time.time() - 3600, ttl=60)}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_answers_401_without_a_valid_token(tmp_path: Path, archive: Engine, method: str,
                                                          path: str) -> None:
    # Given no token, a malformed one, one of another key and an expired one
    async def scenario(call: Call) -> None:
        for why, bad in BAD_TOKENS.items():
            # When each calls the endpoint, Then 401, a problem document, and a Bearer challenge
            status, headers, body = await call(method, path, bad, body={"action": "note"})
            assert status == 401, why
            assert headers["Content-Type"].startswith("application/problem+json")
            assert headers["WWW-Authenticate"].startswith("Bearer") and body["status"] == 401

    publisher = serve(tmp_path, archive, scenario)
    assert publisher.published == []  # and nothing was recorded or published


@pytest.mark.parametrize(("method", "path", "body", "rule"), [
    ("GET", "/v1/desk/cases/X2", None, "case_scope"),                  # another department's case
    ("GET", "/v1/desk/cases/B1", None, "case_scope"),                  # a colleague's case
    ("GET", "/v1/desk/lists/department?department=billing", None, "case_scope"),
    ("POST", "/v1/desk/cases/B1/actions", {"action": "note", "note": "x"}, "case_scope"),
    ("POST", "/v1/desk/cases/A1/actions", {"action": "reopened"}, "role_actions"),
    ("POST", "/v1/desk/cases/U1/actions", {"action": "note", "note": "x"}, "take_unassigned"),
])
def test_a_handler_is_refused_with_403_naming_the_rule(tmp_path: Path, archive: Engine, method: str,
                                                       path: str, body: Any, rule: str) -> None:
    async def scenario(call: Call) -> None:
        status, headers, answer = await call(method, path, token("ann", "handler"), body=body)
        assert (status, answer["rule"]) == (403, rule), answer
        assert headers["Content-Type"].startswith("application/problem+json")

    assert serve(tmp_path, archive, scenario).published == []


def test_auditors_read_but_may_not_act_and_unknown_roles_reach_nothing(tmp_path: Path,
                                                                      archive: Engine) -> None:
    async def scenario(call: Call) -> None:
        auditor = token("al", "auditor", department=None)
        assert (await call("GET", "/v1/desk/cases/X1", auditor))[0] == 200
        status, _, body = await call("POST", "/v1/desk/cases/X1/actions", auditor, body={"action": "note",
                                                                                       "note": "x"})
        assert (status, body["rule"]) == (403, "read_only")
        status, _, body = await call("GET", "/v1/desk/cases/A1", token("x", "janitor"))
        assert (status, body["rule"]) == (403, "known_role")
        status, _, body = await call("GET", "/v1/desk/search", token("x", "janitor"))
        assert (status, body["items"]) == (200, [])  # a list shows only what one may read

    serve(tmp_path, archive, scenario)


def test_my_open_cases_come_nearest_deadline_first_in_stable_pages(tmp_path: Path, archive: Engine) -> None:
    pages: list[Any] = []

    async def scenario(call: Call) -> None:
        ann = token("ann", "handler")
        offset: int | None = 0
        while offset is not None:
            status, _, body = await call("GET", f"/v1/desk/lists/mine?offset={offset}", ann)
            assert status == 200
            pages.append(body)
            offset = body["next_offset"]

    serve(tmp_path, archive, scenario)
    # Then A2 (overdue), A3 (in 1 h), A1 (in 5 h; its met clock does not count); closed A4 absent
    assert [[c["complaint_id"] for c in p["items"]] for p in pages] == [["A2", "A3"], ["A1"]]
    assert pages[0]["limit"] == 2 and pages[1]["items"][0]["next_deadline"].startswith("2026-11-23T14:00")


def test_a_co_handler_finds_the_case_in_their_list_and_a_namesake_prefix_does_not(
        tmp_path: Path, archive: Engine) -> None:
    # Given a billing case co-handled by ann of quality (as the archive folds it), and one
    # co-handled by "ann_2" (a LIKE wildcard and a longer name that starts with ann)
    with archive.begin() as conn:
        conn.execute(insert(cases), [
            case("C1", handler="sam", department="billing", co_handlers="kim@legal, ann@quality"),
            case("C2", handler="sam", department="billing", co_handlers="annx@quality, ann_2@quality")])
    found: dict[str, list[str]] = {}

    async def scenario(call: Call) -> None:
        for who in ("ann", "annx"):
            status, _, body = await call("GET", "/v1/desk/lists/mine?limit=10", token(who, "handler"))
            assert status == 200, body
            found[who] = [c["complaint_id"] for c in body["items"]]
        status, _, _ = await call("GET", "/v1/desk/cases/C2", token("ann", "handler"))
        found["ann reads C2"] = [str(status)]

    serve(tmp_path, archive, scenario)
    # Then ann's list holds C1 beside her own cases, annx's holds C2, and ann may not read C2
    assert "C1" in found["ann"] and "C2" not in found["ann"]
    assert found["annx"] == ["C2"]
    assert found["ann reads C2"] == ["403"]


@pytest.mark.parametrize(("who", "path", "expected"), [
    (("hq", "department_head"), "/v1/desk/lists/department", ["U1", "U2"]),  # first page, oldest first
    (("ann", "handler"), "/v1/desk/lists/unassigned", ["U1", "U2"]),
    (("rita", "reviewer"), "/v1/desk/lists/review", ["R1"]),
    (("ann", "handler"), "/v1/desk/lists/review", []),                   # not in her reach
    (("hq", "department_head"), "/v1/desk/lists/overdue?limit=10", ["A2", "B1", "A3"]),
    (("ann", "handler"), "/v1/desk/lists/overdue?limit=10", ["A2", "A3"]),
    (("sue", "supervisor"), "/v1/desk/search?customer=138%200013%208000", ["X1", "A1"]),
    (("ann", "handler"), "/v1/desk/search?customer=13800138000", ["X1", "A1"][1:]),
    (("sue", "supervisor"), "/v1/desk/search?number=U&limit=10", ["U2", "U1"]),
    (("sue", "supervisor"), "/v1/desk/search?handler=ann&status=closed", ["A4"]),
    (("sue", "supervisor"), "/v1/desk/search?from=2026-11-23&to=2026-11-23&department=review", ["R1"]),
])
def test_work_lists_and_search_show_only_readable_cases(tmp_path: Path, archive: Engine,
                                                        who: tuple[str, str], path: str,
                                                        expected: list[str]) -> None:
    found: list[Any] = []

    async def scenario(call: Call) -> None:
        status, _, body = await call("GET", path, token(*who))
        assert status == 200, body
        found.extend(body["items"])

    serve(tmp_path, archive, scenario)
    assert [c["complaint_id"] for c in found] == expected
    if "overdue" in path:
        assert [c["state"] for c in found][0] == "overdue"


@pytest.mark.parametrize(("path", "field"), [
    ("/v1/desk/lists/everything", "kind"), ("/v1/desk/lists/mine?limit=0", "limit"),
    ("/v1/desk/lists/mine?limit=500", "limit"), ("/v1/desk/search?status=lost", "status"),
    ("/v1/desk/search?from=yesterday", "from"), ("/v1/desk/search?code=pq1", "code"),
    ("/v1/desk/search?customer=hello", "customer"),
])
def test_a_bad_parameter_is_a_400_naming_it(tmp_path: Path, archive: Engine, path: str, field: str) -> None:
    async def scenario(call: Call) -> None:
        status, _, body = await call("GET", path, token("sue", "supervisor"))
        assert (status, body["field"]) == (400, field)

    serve(tmp_path, archive, scenario)


def test_a_customer_search_is_recorded_without_the_customer(tmp_path: Path, archive: Engine) -> None:
    async def scenario(call: Call) -> None:
        await call("GET", "/v1/desk/search?customer=13800138000", token("sue", "supervisor"))

    (record,) = serve(tmp_path, archive, scenario).of_type("staff.accessed")
    assert (record.data.kind, record.data.actor, record.data.complaint_ids) == (
        "customer_searched", "sue", ["X1", "A1"])
    assert "138" not in record.data.model_dump_json()  # (the envelope's random id may hold it)


def test_the_case_page_and_its_access_record(tmp_path: Path, archive: Engine) -> None:
    pages: list[Any] = []

    async def scenario(call: Call) -> None:
        for path in ("/v1/desk/cases/A1", "/v1/desk/cases/X1"):  # her own; one she co-handles
            status, _, body = await call("GET", path, token("ann", "handler"))
            assert status == 200
            pages.append(body)
        assert (await call("GET", "/v1/desk/cases/NOPE", token("ann", "handler")))[0] == 404

    published = serve(tmp_path, archive, scenario)
    own, co = pages
    assert [e["event_id"] for e in own["timeline"]] == ["reg-A1", "ack-A1", "prop-A1"]
    assert {d["milestone"]: d["state"] for d in own["deadlines"]} == {"resolve": "running", "respond": "met"}
    assert own["owners"]["handler"] == "ann" and own["case"]["contact_masked"] == "+86*****8000"
    assert "resolved" in own["actions"] and "reopened" not in own["actions"]
    assert co["owners"]["co_handlers"] == ["ann"]
    # Then each read is on complaints.audit, the actor from the token, with the rule that let her in
    records = [(t, e.subject, e.data.actor, e.data.granted_by) for t, e in published.published]
    assert records == [("complaints.audit", "A1", "ann", "handler:booked"),
                       ("complaints.audit", "X1", "ann", "handler:booked")]


def test_an_action_is_published_with_the_tokens_actor_once_per_idempotency_key(tmp_path: Path,
                                                                              archive: Engine) -> None:
    answers: list[Any] = []

    async def scenario(call: Call) -> None:
        ann = token("ann", "handler")
        plan = {"action": "plan_decided", "note": "replace the unit"}
        for _ in range(2):
            answers.append(await call("POST", "/v1/desk/cases/A1/actions", ann, body=plan,
                                      **{"Idempotency-Key": "k-1"}))
        answers.append(await call("POST", "/v1/desk/cases/A1/actions", ann, body={**plan, "actor": "bob"}))
        answers.append(await call("POST", "/v1/desk/cases/A1/actions", ann, body={"action": "resolved"}))
        answers.append(await call("POST", "/v1/desk/cases/A1/actions", ann, body={"action": "flown"}))
        answers.append(await call("POST", "/v1/desk/cases/A1/actions", ann, body=[1]))
        # she takes an unassigned case of her department
        answers.append(await call("POST", "/v1/desk/cases/U1/actions", ann, body={
            "action": "assigned", "assignment": {"handler": "ann", "reason": "mine now"}}))

    published = serve(tmp_path, archive, scenario)
    first, again, with_actor, no_result, unknown, not_object, take = answers
    assert (first[0], again[0]) == (202, 202)
    assert first[2]["event_id"] == again[2]["event_id"] == derived_id("desk", "A1", "ann", "k-1")
    assert (with_actor[0], with_actor[2]["field"]) == (422, "actor")
    assert no_result[0] == 422 and unknown[0] == 422 and not_object[0] == 400
    assert take[0] == 202
    sent = [e for t, e in published.published if t == "complaints.lifecycle"]
    assert [(e.subject, e.data.action, e.data.actor, e.source) for e in sent] == [
        ("A1", CaseAction.plan_decided, "ann", "desk"), ("A1", CaseAction.plan_decided, "ann", "desk"),
        ("U1", CaseAction.assigned, "ann", "desk")]
    assert (sent[0].correlationid, sent[0].causationid) == ("inbound-1", "reg-A1")


def test_an_approval_takes_the_requester_from_the_archive_and_keeps_four_eyes(tmp_path: Path,
                                                                              archive: Engine) -> None:
    answers: list[Any] = []

    async def scenario(call: Call) -> None:
        approve = {"action": "approved", "approval": {"proposal_event_id": "prop-A1", "requester": "ann"}}
        answers.append(await call("POST", "/v1/desk/cases/A1/actions", token("hq", "department_head"),
                                  body=approve))
        # the proposer, were she an approver too, may not approve her own proposal
        answers.append(await call("POST", "/v1/desk/cases/A1/actions",
                                  token("ann", "handler", "department_head"), body=approve))
        answers.append(await call("POST", "/v1/desk/cases/A1/actions", token("hq", "department_head"),
                                  body={**approve, "approval": {"proposal_event_id": "prop-A1",
                                                                "requester": "bob"}}))
        answers.append(await call("POST", "/v1/desk/cases/A1/actions", token("hq", "department_head"),
                                  body={**approve, "approval": {"proposal_event_id": "ack-A1"}}))

    published = serve(tmp_path, archive, scenario)
    ok, own, wrong_requester, not_a_proposal = answers
    assert ok[0] == 202
    assert (own[0], own[2]["rule"]) == (403, "four_eyes")
    assert (wrong_requester[0], wrong_requester[2]["field"]) == (422, "approval.requester")
    assert not_a_proposal[0] == 409
    (approval,) = [e for t, e in published.published if t == "complaints.lifecycle"]
    assert (approval.data.actor, approval.data.approval.requester) == ("hq", "ann")


@pytest.mark.parametrize("who", [
    ("ann", "handler", "quality"), ("hq", "department_head", "quality"), ("sue", "supervisor", None),
    ("rita", "reviewer", "review"), ("al", "auditor", None), ("x", "janitor", "quality"),
    ("h2", "handler,reviewer", "billing"), ("nd", "handler,department_head", None),
])
def test_the_sql_filter_agrees_with_the_permission_rule(archive: Engine, who: tuple[str, str, str | None]
                                                        ) -> None:
    # Given a person, When the archive is searched with no filter, Then exactly the cases that
    # logic.may_read allows come back (co-handling aside: it shows on the case page only)
    from services.desk import logic, queries
    from services.desk.auth import Identity

    person = Identity(who[0], tuple(who[1].split(",")), who[2])
    staff = load_policy().staff
    with archive.connect() as conn:
        rows = [dict(r) for r in conn.execute(cases.select()).mappings()]
        listed = queries.search(conn, queries.Search(), person, staff, limit=100, offset=0)
    facts = [logic.CaseFacts(r["complaint_id"], r["handler"], r["department"], bool(r["review"])) for r in rows]
    expected = {f.complaint_id for f in facts if isinstance(logic.may_read(person, f, staff=staff), logic.Allowed)}
    assert {r["complaint_id"] for r in listed} == expected


def test_a_resolution_needs_an_archived_approval_and_a_template_that_renders(tmp_path: Path,
                                                                              archive: Engine) -> None:
    # Given A2 with ann's proposal of CNY 800 approved by hq in the archive, and A3 with none
    comp = {"amount": "800.00", "currency": "CNY"}
    with archive.begin() as conn:
        conn.execute(insert(events), [
            event("A2", "prop-A2", "resolution_proposed", "ann", minutes=10, summary={"outcome": {
                "solution": "compensation", "compensation": comp}}),
            event("A2", "appr-A2", "approved", "hq", minutes=20, summary={"approval": {
                "proposal_event_id": "prop-A2", "requester": "ann"}}),
        ])
    outcome = {"solution": "compensation", "compensation": comp, "party_at_fault": "company",
               "root_cause": "PQ-01", "template": "compensated", "fields": {"amount": "¥800"}}
    answers: list[Any] = []

    async def scenario(call: Call) -> None:
        ann = token("ann", "handler")
        resolve = {"action": "resolved", "result": "compensated", "outcome": outcome}
        # When ann resolves A3 (no approval), A2 (approved), and A1 with templates that do not render
        answers.append(await call("POST", "/v1/desk/cases/A3/actions", ann, body=resolve))
        answers.append(await call("POST", "/v1/desk/cases/A2/actions", ann, body=resolve))
        for bad in ({"template": "nonesuch"}, {"fields": {}}):
            answers.append(await call("POST", "/v1/desk/cases/A1/actions", ann, body={
                **resolve, "outcome": {**outcome, "compensation": None, "solution": "apology", **bad}}))

    published = serve(tmp_path, archive, scenario)
    unapproved, approved, unknown_template, missing_field = answers
    # Then the unapproved one is refused naming the rule, the approved one published with its approver
    assert (unapproved[0], unapproved[2]["rule"]) == (403, "approval_required")
    assert approved[0] == 202, approved
    assert (unknown_template[0], unknown_template[2]["field"]) == (422, "outcome.template")
    assert (missing_field[0], missing_field[2]["field"]) == (422, "outcome.fields")
    (sent,) = [e for t, e in published.published if t == "complaints.lifecycle"]
    assert (sent.subject, sent.data.actor, sent.data.outcome.approved_by) == ("A2", "ann", "hq")


def test_a_suggestion_is_assessed_by_whoever_may_resolve_it_and_a_complaint_is_not(tmp_path: Path,
                                                                                  archive: Engine) -> None:
    # Given a suggestion booked to ann beside her complaint A1
    with archive.begin() as conn:
        conn.execute(insert(cases), [case("S1", handler="ann", department="quality", nature="suggestion")])
    answers: list[Any] = []
    declined = {"action": "suggestion_assessed",
                "assessment": {"decision": "declined", "reason": "the store closes at nine by law"}}

    async def scenario(call: Call) -> None:
        ann = token("ann", "handler")
        # When she opens both cases, and assesses the suggestion and (wrongly) the complaint
        answers.append(await call("GET", "/v1/desk/cases/S1", ann))
        answers.append(await call("GET", "/v1/desk/cases/A1", ann))
        answers.append(await call("POST", "/v1/desk/cases/S1/actions", ann, body=declined))
        answers.append(await call("POST", "/v1/desk/cases/A1/actions", ann, body=declined))
        # a decline without its reason, an assessment on another action, bob (not booked), an auditor
        answers.append(await call("POST", "/v1/desk/cases/S1/actions", ann, body={
            "action": "suggestion_assessed", "assessment": {"decision": "declined"}}))
        answers.append(await call("POST", "/v1/desk/cases/S1/actions", ann, body={
            "action": "note", "note": "n", "assessment": {"decision": "adopted"}}))
        answers.append(await call("POST", "/v1/desk/cases/S1/actions", token("bob", "handler"), body=declined))
        answers.append(await call("POST", "/v1/desk/cases/S1/actions", token("al", "auditor"), body=declined))
        # and the department head adopts it
        answers.append(await call("POST", "/v1/desk/cases/S1/actions", token("hq", "department_head"), body={
            "action": "suggestion_assessed", "assessment": {"decision": "adopted", "measure": "open till ten"}}))

    published = serve(tmp_path, archive, scenario)
    page, complaint, ok, wrong_nature, no_reason, misplaced, bob, auditor, head = answers
    # Then the form is offered on the suggestion only
    assert "suggestion_assessed" in page[2]["actions"] and "resolved" in page[2]["actions"]
    assert "suggestion_assessed" not in complaint[2]["actions"]
    # And the complaint's assessment is a 409 problem naming the nature; the schema's are 422
    assert ok[0] == 202 and head[0] == 202
    assert wrong_nature[0] == 409 and "is a complaint" in wrong_nature[2]["detail"]
    assert wrong_nature[1]["Content-Type"].startswith("application/problem+json")
    assert (no_reason[0], misplaced[0]) == (422, 422)
    assert (bob[0], bob[2]["rule"]) == (403, "case_scope")
    assert (auditor[0], auditor[2]["rule"]) == (403, "read_only")
    sent = [e for t, e in published.published if t == "complaints.lifecycle"]
    assert [(e.subject, e.data.actor, e.data.assessment.decision if e.data.assessment else None)
            for e in sent] == [("S1", "ann", "declined"), ("S1", "hq", "adopted")]
    assert sent[0].data.assessment is not None
    assert sent[0].data.assessment.reason == "the store closes at nine by law"
