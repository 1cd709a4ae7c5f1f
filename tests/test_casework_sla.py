"""The SLA monitor and the work on a case: contacts meet feedback and revisit, a proposed
resolution does not stop the resolve clock, a transfer changes who later alerts name."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.events import CaseAction, DecisionKind, Milestone
from services.sla_monitor.facts import facts_of
from tests.test_sla_logic import T0, H, action, evaluate, keys, routed

OUTCOME = {"solution": "refund", "party_at_fault": "company", "root_cause": "PQ-01"}


def contacted(at: Any, *, purpose: str, reached: bool = True, kind: str = "phone_callback",
              score: int | None = None) -> Any:
    return action(CaseAction.contacted, at, contact={"kind": kind, "purpose": purpose, "reached": reached,
                                                     "score": score})


@pytest.mark.parametrize(("purpose", "reached", "signals"), [
    ("feedback", True, ["contacted", "contacted:feedback"]),
    ("revisit", True, ["contacted", "contacted:revisit"]),
    ("feedback", False, ["contacted"]),   # nobody answered: nothing is met
    ("revisit", False, ["contacted"]),
    ("other", True, ["contacted"]),
])
def test_a_contact_raises_its_purpose_only_when_it_reached_the_customer(
        purpose: str, reached: bool, signals: list[str]) -> None:
    # Given a contact record, When the monitor takes its facts, Then these are its signals
    (fact,) = facts_of(contacted(T0, purpose=purpose, reached=reached))
    assert fact.signals == signals


@pytest.mark.parametrize(("contact", "feedback", "revisit"), [
    # a call-back that told the customer the result meets feedback; the revisit still runs
    ({"purpose": "feedback"}, ["1:met", "1:started"], ["1:started"]),
    # a revisit visit meets the revisit (the customer without an address is revisited in person)
    ({"purpose": "revisit", "kind": "visit", "score": 5}, ["1:started"], ["1:met", "1:started"]),
    # an unanswered call meets nothing
    ({"purpose": "feedback", "reached": False}, ["1:started"], ["1:started"]),
])
def test_a_reached_contact_meets_the_feedback_or_revisit_milestone(
        contact: dict[str, Any], feedback: list[str], revisit: list[str]) -> None:
    # Given a resolved case (the customer has no address: no result or revisit message goes)
    events = [routed(), action(CaseAction.resolved, T0 + 2 * H)]
    # When a handler records a contact 3 hours after the resolution
    events.append(contacted(T0 + 5 * H, **contact))
    owed, _ = evaluate(events, now=T0 + 6 * H)
    # Then the milestone of its purpose is met, on time; the other one keeps running
    assert keys(owed, "feedback") == feedback and keys(owed, "revisit") == revisit
    for milestone, got in (("feedback", feedback), ("revisit", revisit)):
        if "1:met" in got:
            assert owed[f"{milestone}:1:met"].alert.on_time is True


def test_a_proposed_resolution_does_not_stop_the_resolve_clock_only_the_resolution_does() -> None:
    # Given a case whose resolution was proposed after 2 hours and is waiting for approval
    events = [routed(), action(CaseAction.resolution_proposed, T0 + 2 * H, outcome=OUTCOME)]
    owed, _ = evaluate(events, now=T0 + 25 * H)
    # Then the resolve clock ran on and breached (24 h general)
    assert "1:met" not in keys(owed, "resolve") and "1:breached" in keys(owed, "resolve")
    assert keys(owed, "feedback") == []  # nor did feedback start
    # When it is approved and resolved within the limit instead
    events += [action(CaseAction.approved, T0 + 3 * H, actor="boss",
                      approval={"proposal_event_id": "p", "requester": "agent-1"}),
               action(CaseAction.resolved, T0 + 4 * H, outcome={**OUTCOME, "approved_by": "boss"})]
    owed, _ = evaluate(events, now=T0 + 25 * H)
    # Then the resolution met it on time
    assert owed["resolve:1:met"].alert.on_time is True


def test_after_a_transfer_later_alerts_name_the_new_handler_and_department() -> None:
    # Given a case routed to quality-l1-01, then transferred to billing-l1-01 after 10 minutes
    transfer = routed(decision=DecisionKind.transferred, revision=2, handler="billing-l1-01",
                      at=T0 + H / 6)
    transfer = transfer.model_copy(update={"data": transfer.data.model_copy(
        update={"department": "billing"})})
    owed, _ = evaluate([routed(), transfer], now=T0 + 50 * H / 60)
    # Then the respond warning (at 50 %, 30 minutes) names the new handler and department
    warning = owed["respond:1:warning:0.5"].alert
    assert (warning.handler, warning.department) == ("billing-l1-01", "billing")
    assert warning.notify == ["handler", "first_contact_owner"]
    # And the transfer's booking counts as the dispatch (a handler booked outside review)
    assert "1:met" in keys(owed, Milestone.dispatch.value)
