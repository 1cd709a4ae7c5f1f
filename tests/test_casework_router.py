"""The router and staff moving a case, pure: what an assignment, a transfer or a co-handler
makes of the current decision; and the rebuild of the loads from such decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from schemas.casework import Assignment
from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    CoHandler,
    ComplaintRouted,
    DecisionKind,
    Level,
    RoutingDecision,
    Severity,
)
from services.common.errors import Rejected
from services.router import casework, rebuild
from services.router.logic import HANDLER, HANDLER_REASON, Booking
from services.router.roster import load_roster

ROSTER = load_roster()
T0 = datetime(2026, 11, 23, 2, tzinfo=UTC)


def current(**changes: Any) -> RoutingDecision:
    d = RoutingDecision(complaint_id="C", revision=3, received_at=T0, code="PQ-01", severity=Severity.general,
                        department="quality", level=Level.L2, handler="quality-l2-01",
                        first_contact_owner="web-desk", reasons=["routed"])
    return d.model_copy(update=changes)


def work(action: CaseAction, **to: str) -> casework.Assign:
    return casework.Assign(("e1",), action, Assignment(reason="cross-check", **to), "supervisor-01")


@pytest.mark.parametrize(("to", "department", "booking"), [
    # Given an assignment, Then the decision's department and the booking it asks for
    ({"handler": "billing-l1-01"}, "billing", Booking("billing", Level.L2, handler="billing-l1-01")),
    ({"handler": "billing-l1-01", "department": "billing"}, "billing",
     Booking("billing", Level.L2, handler="billing-l1-01")),
    ({"department": "billing"}, "billing", Booking("billing", Level.L2)),   # the least loaded of billing
    ({"handler": "temp-07"}, "quality", Booking("quality", Level.L2, handler="temp-07")),  # not on the roster
    ({"handler": "temp-07", "department": "legal-x"}, None, "not a department of roster"),
    ({"department": "nowhere"}, None, "data.assignment.department: nowhere is not a department"),
    ({"handler": "billing-l1-01", "department": "quality"}, None,
     "handler billing-l1-01 is in department billing, not quality"),
])
def test_an_assignment_rebooks_the_case_at_its_level(to: dict[str, str], department: str | None,
                                                     booking: Booking | str) -> None:
    if isinstance(booking, str):
        with pytest.raises(Rejected, match=booking):
            casework.propose(current(), work(CaseAction.transferred, **to), roster=ROSTER)
        return
    proposal = casework.propose(current(), work(CaseAction.transferred, **to), roster=ROSTER)
    d = proposal.decision
    assert proposal.booking == booking
    assert (d.decision, d.revision, d.department, d.level, d.handler, d.trigger) == (
        DecisionKind.transferred, 4, department, Level.L2, HANDLER, "transferred")
    assert d.reasons[0] == "transferred by supervisor-01: cross-check" and d.reasons[-1] == HANDLER_REASON


def test_an_assignment_out_of_the_review_queue_ends_the_review() -> None:
    # Given a case waiting for review in the review department
    waiting = current(department="complaint_review", review=True, handler=None)
    # When a reviewer assigns it to quality, Then it leaves review; inside the queue it stays
    moved = casework.propose(waiting, work(CaseAction.assigned, department="quality"), roster=ROSTER)
    kept = casework.propose(waiting, work(CaseAction.assigned, handler="temp-07"), roster=ROSTER)
    assert (moved.decision.review, kept.decision.review) == (False, True)


def test_a_co_handler_is_recorded_once_and_books_nobody() -> None:
    # Given a case with a co-handler of service already
    d = current(co_handlers=[CoHandler(handler="service-l1-01", department="service")])
    # When a quality co-handler is added, and the service one again
    once = casework.propose(d, work(CaseAction.co_handler_added, handler="quality-l1-02"), roster=ROSTER)
    again = casework.propose(once.decision, work(CaseAction.co_handler_added, handler="service-l1-01"),
                             roster=ROSTER)
    # Then the list holds each once, the handler and loads are untouched (no booking)
    assert once.booking is None and again.booking is None
    assert [(c.handler, c.department) for c in again.decision.co_handlers] == [
        ("quality-l1-02", "quality"), ("service-l1-01", "service")]
    assert (again.decision.handler, again.decision.department, again.decision.revision) == (
        "quality-l2-01", "quality", 5)


@pytest.mark.parametrize(("action", "effect"), [
    (CaseAction.assigned, True), (CaseAction.transferred, True), (CaseAction.co_handler_added, True),
    (CaseAction.note, False), (CaseAction.resolved, False),
])
def test_only_assignments_are_casework_for_the_router(action: CaseAction, effect: bool) -> None:
    fields: dict[str, Any] = {"assignment": {"handler": "h", "reason": "r"}} if effect else {}
    if action is CaseAction.resolved:
        fields["result"] = "ok"
    event = CaseEvent.new(CaseUpdate(complaint_id="C", action=action, actor="sup", **fields),
                          source="desk", time=T0, subject="C")
    got = casework.work_effect(event)
    assert (got is not None) == effect
    if got is not None:
        assert got.triggers == (event.id,) and got.action is action


@pytest.mark.integration
def test_the_rebuild_keeps_the_booked_handler_through_a_co_handler_decision(
        redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the topics of two cases: A transferred to billing-l1-01 then given a co-handler;
    # B routed, resolved, then given a co-handler (after the release)
    def routed(cid: str, revision: int, kind: DecisionKind, handler: str, minute: int) -> dict[str, Any]:
        d = current(complaint_id=cid, decision=kind, revision=revision, handler=handler)
        return ComplaintRouted.new(d, source="router", time=T0 + timedelta(minutes=minute), subject=cid,
                                   causationid=f"{cid}-{revision}").model_dump(mode="json")

    resolved = CaseEvent.new(CaseUpdate(complaint_id="B", action=CaseAction.resolved, actor="x", result="ok"),
                             source="desk", time=T0 + timedelta(minutes=5), subject="B")
    topics = {
        "complaints.routed": [routed("A", 1, DecisionKind.routed, "quality-l2-01", 0),
                              routed("A", 2, DecisionKind.transferred, "billing-l1-01", 1),
                              routed("A", 3, DecisionKind.co_handler_added, "billing-l1-01", 2),
                              routed("B", 1, DecisionKind.routed, "quality-l2-02", 0),
                              routed("B", 2, DecisionKind.co_handler_added, "quality-l2-02", 9)],
        "complaints.lifecycle": [resolved.model_dump(mode="json")],
        "complaints.registered": [],
    }
    monkeypatch.setattr(rebuild, "read_topic", lambda bootstrap, topic: iter(topics[topic]))
    client = redis.Redis.from_url(redis_url)
    try:
        # When the router's state is rebuilt
        report = rebuild.rebuild([], client, prefix=redis_prefix, window=timedelta(days=30),
                                 ttl=timedelta(days=1), now=T0 + timedelta(hours=1))
        # Then A holds its transferred handler, and B's co-handler decision does not re-hold
        # the handler its resolution released
        loads = {k.decode(): int(v) for k, v in client.hgetall(f"{redis_prefix}router:load").items()}
        assert loads == {"billing-l1-01": 1} and report.cases == 2
        held = client.hget(f"{redis_prefix}router:case:B", "held")
        assert held == b"" and json.loads(client.hget(f"{redis_prefix}router:case:B", "d") or b"{}")[
            "data"]["revision"] == 2
    finally:
        client.close()
