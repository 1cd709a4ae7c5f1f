"""Contracts: committed JSON Schemas match the models; envelopes carry their attributes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

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
    assert len(names) == len(set(names)) == 7
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
