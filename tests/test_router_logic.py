"""Router rules as a table: text in, severity / department / level / owner out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from schemas.events import Channel, Complaint, ComplaintRegistered, Contact, Level, Severity
from services.common.policy import load_policy
from services.router.app import Router
from services.router.logic import route
from services.router.metrics import RouterMetrics
from services.router.ports import PriorComplaint
from tests.fakes import DictFirstContacts, FixedClock, RecordingPublisher

POLICY = load_policy()


def complaint(text: str, first_contact: str = "web-desk") -> Complaint:
    return Complaint(
        complaint_id="261123-0000000001", channel=Channel.web_form,
        received_at=datetime(2026, 11, 23, 9, tzinfo=UTC), source_message_id="m",
        customer=Contact(), customer_key="k", first_contact=first_contact, subject=text[:40],
        description=text)


@pytest.mark.parametrize(("text", "severity", "department", "level"), [
    ("The screen is broken after a week", Severity.general, "quality", Level.L1),
    ("充电器起火了，质量太差，孩子手被烫伤受伤", Severity.major, "quality", Level.L3),
    ("I will ask my lawyer about this overcharge", Severity.major, "billing", Level.L3),
    ("Second time I complain, urgent: you charged me twice", Severity.urgent, "billing", Level.L2),
    ("店员态度很差", Severity.general, "service", Level.L1),
    ("Something unclear happened", Severity.general, "customer_service", Level.L1),
])
def test_route_table(text: str, severity: Severity, department: str, level: Level) -> None:
    decision = route(complaint(text), rules=POLICY.router)
    assert (decision.severity, decision.department, decision.level) == (severity, department, level)
    assert decision.first_contact_owner == "web-desk"
    assert len(decision.reasons) == 4


def test_first_contact_owner_is_who_received_it() -> None:
    assert route(complaint("broken", "store-sh-01"), rules=POLICY.router).first_contact_owner == "store-sh-01"


def test_a_redelivered_registration_yields_the_same_decision_event() -> None:
    # Given a router with a recording publisher
    publisher = RecordingPublisher()
    router = Router(policy=POLICY, publisher=publisher, first_contacts=DictFirstContacts(),
                    clock=FixedClock(),
                    metrics=RouterMetrics.create(CollectorRegistry()))
    registered = ComplaintRegistered.new(complaint("broken"), source="intake", time=FixedClock()(),
                                         subject="261123-0000000001")
    # When the same registration arrives twice
    for _ in range(2):
        asyncio.run(router.on_registered(None, registered.to_bytes()))
    # Then both decisions carry one event id, so consumers apply it once
    ids = {e.id for e in publisher.of_type("complaint.routed")}
    assert len(ids) == 1 and len(publisher.published) == 2


@pytest.mark.parametrize(("text", "prior", "owner", "severity", "repeat_of"), [
    ("The screen is broken", None, "store-sh-01", Severity.general, None),
    ("The screen is broken", PriorComplaint(complaint_id="261120-0000000009", owner="agent-3"),
     "agent-3", Severity.urgent, "261120-0000000009"),
    ("起火了", PriorComplaint(complaint_id="261120-0000000009", owner="agent-3"),
     "agent-3", Severity.major, "261120-0000000009"),  # a repeat never lowers severity
    ("The screen is broken", PriorComplaint(complaint_id="261123-0000000001", owner="agent-3"),
     "store-sh-01", Severity.general, None),  # its own anchor (a redelivery) is no repeat
])
def test_a_repeat_complaint_goes_back_to_the_first_contact_owner(
        text: str, prior: PriorComplaint | None, owner: str, severity: Severity,
        repeat_of: str | None) -> None:
    decision = route(complaint(text, "store-sh-01"), rules=POLICY.router, prior=prior)
    assert (decision.first_contact_owner, decision.severity, decision.repeat_of) == (owner, severity, repeat_of)
    assert decision.level == POLICY.router.levels[severity]


def test_the_same_customer_twice_is_linked_and_keeps_its_owner() -> None:
    # Given a router whose first-contact memory is empty
    publisher, contacts = RecordingPublisher(), DictFirstContacts()
    router = Router(policy=POLICY, publisher=publisher, first_contacts=contacts, clock=FixedClock(),
                    metrics=RouterMetrics.create(CollectorRegistry()))
    first = complaint("broken", "agent-1")
    second = first.model_copy(update={"complaint_id": "261123-0000000002", "first_contact": "web-desk"})
    # When the customer complains twice, through different channels
    for c in (first, second):
        event = ComplaintRegistered.new(c, source="intake", time=FixedClock()(), subject=c.complaint_id)
        asyncio.run(router.on_registered(None, event.to_bytes()))
    # Then the second goes back to the first one's owner and is linked to it
    decisions = [e.data for e in publisher.of_type("complaint.routed")]
    assert [d.first_contact_owner for d in decisions] == ["agent-1", "agent-1"]
    assert decisions[1].repeat_of == first.complaint_id and decisions[0].repeat_of is None
