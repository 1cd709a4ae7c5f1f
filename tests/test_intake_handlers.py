"""Intake's handlers over fakes: the timeline projection in batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from schemas.events import CaseEvent, CaseUpdate
from services.common.policy import load_policy
from services.intake.handlers import Intake
from services.intake.metrics import IntakeMetrics
from tests.fakes import DictRegistrations, DictTimelines, FixedClock, RecordingPublisher

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def test_a_projected_batch_keeps_good_events_once_and_hands_back_bad_ones() -> None:
    # Given intake over fakes and a batch with an event, its redelivery and a broken record
    timelines = DictTimelines()
    intake = Intake(policy=load_policy(), publisher=RecordingPublisher(),
                    registrations=DictRegistrations(), timelines=timelines, clock=FixedClock(),
                    random_bits=lambda: 1, identity_secret=b"k" * 16,
                    metrics=IntakeMetrics.create(CollectorRegistry()))
    event = CaseEvent.new(CaseUpdate(complaint_id="C1", action="note", actor="a"), source="intake",
                          time=T0, subject="C1").to_bytes()
    # When it is projected
    outcomes = asyncio.run(intake.project_many([event, b"not an event", event]))
    # Then the event is on its timeline once, and only the broken record comes back as bad
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ValidationError)
    assert asyncio.run(timelines.get("C1")) == [event]
