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
from tests.fakes import FixedClock, RecordingPublisher

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
    router = Router(policy=POLICY, publisher=publisher, clock=FixedClock(),
                    metrics=RouterMetrics.create(CollectorRegistry()))
    registered = ComplaintRegistered.new(complaint("broken"), source="intake", time=FixedClock()(),
                                         subject="261123-0000000001")
    # When the same registration arrives twice
    for _ in range(2):
        asyncio.run(router.on_registered(None, registered.to_bytes()))
    # Then both decisions carry one event id, so consumers apply it once
    ids = {e.id for e in publisher.of_type("complaint.routed")}
    assert len(ids) == 1 and len(publisher.published) == 2
