"""Contracts: committed JSON Schemas match the models; envelopes carry their attributes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.casework import Money
from schemas.envelope import derived_id
from schemas.events import CaseEvent, CaseUpdate, InboundMessage, InboundReceived
from schemas.export import JSON_DIR, render
from schemas.topics import ALL_TOPICS

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_committed_json_schemas_match_the_models() -> None:
    expected = render()
    committed = {p.name: p.read_text(encoding="utf-8") for p in JSON_DIR.glob("*.schema.json")}
    assert committed.keys() == expected.keys()
    drifted = [name for name, text in expected.items() if committed[name] != text]
    assert not drifted, f"run `complaints schemas export` and commit: {drifted}"


def test_every_topic_is_declared_once_with_its_model() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names)) == 9
    assert all(t.name.startswith("complaints.") and t.partitions > 0 for t in ALL_TOPICS)


def test_a_caused_event_inherits_correlation_and_names_its_cause() -> None:
    inbound = InboundReceived.new(InboundMessage(channel="sms", payload="hi"), source="t", time=T0,
                                  subject=None)
    case = CaseEvent.new(CaseUpdate(complaint_id="C", action="note", actor="a"), source="intake",
                         time=T0, subject="C", cause=inbound)
    assert (case.correlationid, case.causationid) == (inbound.id, inbound.id)
    assert case.type == "case.updated" and case.schemaversion == 1 and case.specversion == "1.0"
    assert case.key() == b"C" and inbound.key() is None
    assert CaseEvent.model_validate_json(case.to_bytes()) == case


def test_derived_ids_are_deterministic() -> None:
    assert derived_id("a", "b") == derived_id("a", "b") != derived_id("a", "c")


@pytest.mark.parametrize("body", [
    {"complaint_id": "C", "action": "resolved", "actor": "a"},
    {"complaint_id": "C", "action": "satisfaction", "actor": "a"},
    {"complaint_id": "C", "action": "satisfaction", "actor": "a", "score": 9},
    {"complaint_id": "C", "action": "teleported", "actor": "a"},
    {"complaint_id": "C", "action": "note", "actor": "a", "extra": 1},
])
def test_invalid_case_updates_are_refused(body: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError):
        CaseUpdate.model_validate(body)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        InboundReceived.new(InboundMessage(channel="sms", payload="x"), source="t",
                            time=datetime(2026, 1, 1), subject=None)  # noqa: DTZ001


# ---- the structured work on a case (schemas/casework.py) -----------------------------------

OUTCOME = {"solution": "compensation", "compensation": {"amount": "500", "currency": "CNY"},
           "party_at_fault": "company", "root_cause": "PQ-01", "template": "compensated",
           "fields": {"amount": "500 元"}}
CONTACT = {"kind": "phone_callback", "purpose": "revisit", "reached": True, "score": 4}


def _update(action: str, actor: str = "quality-l1-01", **fields: object) -> dict[str, object]:
    return {"complaint_id": "C", "action": action, "actor": actor, **fields}


@pytest.mark.parametrize(("body", "problem"), [
    (_update("assigned"), "assigned events need the field assignment"),
    (_update("transferred", assignment={"reason": "x"}), "names a handler, a department or both"),
    (_update("assigned", assignment={"handler": "h", "reason": "  "}), "must not be blank"),
    (_update("assigned", assignment={"handler": "h", "reason": "x" * 501}), "at most 500 characters"),
    (_update("note", assignment={"handler": "h", "reason": "r"}),
     "assignment belongs on assigned, co_handler_added, transferred events, not on note"),
    (_update("plan_decided", plan={"summary": "fix", "measures": [{"description": "d", "owner": "o"}]}),
     "Field required"),
    (_update("plan_decided", plan={"summary": "fix", "measures": [
        {"description": "d", "owner": "o", "due": "next week"}]}), "valid date"),
    (_update("resolution_proposed"), "resolution_proposed events need the field outcome"),
    (_update("resolved", result="ok", outcome={**OUTCOME, "compensation": None}),
     "a compensation solution needs a compensation amount"),
    (_update("resolved", result="ok", outcome={**OUTCOME, "compensation": {"amount": "-1", "currency": "CNY"}}),
     "greater than or equal to 0"),
    (_update("resolved", result="ok", outcome={**OUTCOME, "compensation": {"amount": "1.005", "currency": "CNY"}}),
     "no more than 2 decimal places"),
    (_update("resolved", result="ok", outcome={**OUTCOME, "compensation": {"amount": "1", "currency": "cny"}}),
     "should match pattern"),
    (_update("resolved", result="ok", outcome={**OUTCOME, "root_cause": "broken"}), "should match pattern"),
    (_update("resolved", result="ok", outcome={**OUTCOME, "party_at_fault": "the moon"}), "Input should be"),
    (_update("resolved", result="ok", outcome={**OUTCOME, "template": None}), "name the template"),
    (_update("resolved", outcome=OUTCOME), "resolved events need the field result"),
    (_update("resolution_proposed", outcome={**OUTCOME, "approved_by": "boss"}),
     "approved_by is set on the resolved event after an approval"),
    (_update("approved"), "approved events need the field approval"),
    (_update("approved", actor="boss", approval={"proposal_event_id": "e1", "requester": "boss"}),
     "four-eyes: the approver (actor) must not be the requester"),
    (_update("contacted"), "contacted events need the field contact"),
    (_update("contacted", contact={**CONTACT, "purpose": "feedback"}),
     "a score is the answer of a revisit that reached the customer"),
    (_update("contacted", contact={**CONTACT, "reached": False}), "a score is the answer of a revisit"),
    (_update("contacted", contact={**CONTACT, "score": 6}), "less than or equal to 5"),
    (_update("contacted", contact={**CONTACT, "kind": "telepathy"}), "Input should be"),
])
def test_case_work_without_its_facts_is_refused_with_the_reason(body: dict[str, object], problem: str) -> None:
    # Given a case event body that lacks a fact its action needs, or carries a wrong one
    # When it is parsed, Then it is refused, and the message says what is wrong
    with pytest.raises(ValidationError, match=re.escape(problem)):
        CaseUpdate.model_validate(body)


@pytest.mark.parametrize("body", [
    _update("assigned", assignment={"department": "billing", "reason": "billing question"}),
    _update("transferred", assignment={"handler": "billing-l1-01", "reason": "r"}),
    _update("co_handler_added", assignment={"handler": "quality-l1-01", "department": "quality",
                                            "reason": "r"}),
    _update("plan_decided"),  # a plan stays optional: events before the desk have none
    _update("plan_decided", plan={"summary": "replace", "measures": [
        {"description": "check the batch", "owner": "quality-l2-01", "due": "2026-12-01"}]}),
    _update("resolution_proposed", outcome=OUTCOME),
    _update("resolved", result="ok"),  # an outcome stays optional on resolved
    _update("resolved", result="ok", outcome={**OUTCOME, "approved_by": "boss"}),
    _update("approved", actor="boss", approval={"proposal_event_id": "e1", "requester": "quality-l1-01"}),
    _update("contacted", contact=CONTACT),
    _update("contacted", contact={"kind": "visit", "purpose": "feedback", "reached": False}),
])
def test_case_work_with_its_facts_round_trips_through_json(body: dict[str, object]) -> None:
    # Given a valid body, When it is parsed, serialised and parsed again, Then nothing changed
    update = CaseUpdate.model_validate(body)
    event = CaseEvent.new(update, source="desk", time=T0, subject="C")
    assert CaseEvent.model_validate_json(event.to_bytes()) == event


def test_money_keeps_two_decimal_places() -> None:
    # Given amounts written as integers, floats and strings, Then each has exactly two places
    for given, text in ((500, "500.00"), (12.5, "12.50"), ("0.1", "0.10")):
        money = Money(amount=given, currency="CNY")  # type: ignore[arg-type]
        assert money.model_dump(mode="json")["amount"] == text
    assert Money(amount=Decimal("3"), currency="USD").amount == Decimal("3.00")
