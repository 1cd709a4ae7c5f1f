"""Thousands of generated payloads at every adapter: each ends registered or dead-lettered.

The consumer boundary catches everything, so the property checked is stronger than
"nothing escapes": every rejection is a *classified* one (schema or Rejected) with a
reason, never the boundary's catch-all for unexpected errors.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from schemas.events import Channel, InboundMessage, InboundReceived
from services.common.boundary import Boundary
from services.common.policy import load_policy
from services.intake.handlers import Intake
from services.intake.metrics import IntakeMetrics
from tests.fakes import DictRegistrations, DictTimelines, FixedClock, RecordingPublisher

FIELDS = ["text", "description", "transcript", "notes", "subject", "title", "name", "phone", "caller",
          "sender", "email", "agent_id", "desk", "store_id", "staff_id", "platform", "post_id", "audience",
          "public", "rating", "review_id", "complaint_id", "score", "comment", "reporter", "reference",
          "medium", "user_id", "app_version", "screenshots", "attachments", "scans", "order_id",
          "product", "demand", "purchase_time", "submitted_at", "started_at", "posted_at", "language",
          "raw", "raw_base64", "xml", "consent", "kind", "message_id"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=80), st.sampled_from(["", "13800138000", "a@b.cn", "refund", "5",
                                                           "2026-11-23T09:30:00+08:00", "<p>x</p>"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["name", "url", "sha256", "size"]), inner, max_size=3),
                      max_leaves=6)
PAYLOADS = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8),
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["<xml><MsgType>text</MsgType></xml>", "From: a@b\n\nhi", "<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"]),
)
POLICY = load_policy()
CLASSIFIED = {"ValidationError", "Rejected", "JSONDecodeError", "UnicodeDecodeError"}


def _service() -> tuple[Boundary, Intake, RecordingPublisher]:
    SERVICE[2].published.clear()
    return SERVICE


def _build() -> tuple[Boundary, Intake, RecordingPublisher]:
    publisher, registry = RecordingPublisher(), CollectorRegistry()
    intake = Intake(policy=POLICY, publisher=publisher, registrations=DictRegistrations(),
                    timelines=DictTimelines(), clock=FixedClock(), random_bits=lambda: 7,
                    identity_secret=b"k" * 16, metrics=IntakeMetrics.create(registry))
    return Boundary(service="intake", publisher=publisher, registry=registry), intake, publisher


SERVICE = _build()  # one service for all examples: only its publisher's record is reset


@pytest.mark.parametrize("channel", list(Channel))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=PAYLOADS)
def test_every_payload_is_registered_or_dead_lettered_with_a_reason(channel: Channel, payload: Any) -> None:
    # Given intake behind its consumer boundary
    boundary, intake, publisher = _service()

    async def handle(key: bytes | None, value: bytes) -> None:
        await intake.register(InboundReceived.model_validate_json(value), via="kafka")

    record = InboundReceived.new(InboundMessage(channel=channel, payload=payload), source="t",
                                 time=datetime(2026, 11, 23, tzinfo=UTC), subject=None).to_bytes()
    # When a generated payload arrives
    asyncio.run(boundary.run(handle, topic="complaints.inbound", partition=0, offset=1, key=None,
                             value=record))
    # Then exactly one outcome was published: registered, or dead-lettered for a classified reason
    outcomes = [e for _, e in publisher.published]
    assert len(outcomes) == 1
    if outcomes[0].type == "deadletter.recorded":
        letter = outcomes[0].data
        assert letter.error_type in CLASSIFIED, letter.reason
        assert letter.reason and base64.b64decode(letter.original) == record
    else:
        assert outcomes[0].type in ("complaint.registered", "case.updated")


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes_on_the_inbound_topic_are_dead_lettered(raw: bytes) -> None:
    boundary, intake, publisher = _service()

    async def handle(key: bytes | None, value: bytes) -> None:
        await intake.register(InboundReceived.model_validate_json(value), via="kafka")

    asyncio.run(boundary.run(handle, topic="complaints.inbound", partition=0, offset=1, key=None, value=raw))
    (letter,) = [e for _, e in publisher.published]
    assert letter.type == "deadletter.recorded" and letter.data.error_type in CLASSIFIED
    assert json.loads(letter.to_bytes())["data"]["original"] == base64.b64encode(raw).decode()
