"""Every topic, declared once: name, partitions, key, value model."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.audit import StaffAccessed
from schemas.envelope import Envelope
from schemas.events import (
    CaseEvent,
    ComplaintRegistered,
    ComplaintRouted,
    DataKeyRecorded,
    DeadLetterEvent,
    InboundReceived,
    NotificationEvent,
    SlaEvent,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    value: type[Envelope]
    description: str
    config: tuple[tuple[str, str], ...] = ()
    """Topic configuration set at creation, e.g. (("cleanup.policy", "compact"),)."""


PARTITIONS = 6

INBOUND = TopicSpec(
    "complaints.inbound", PARTITIONS, "channel message id (or none)", InboundReceived,
    "Raw channel payloads, as received, in an envelope with channel and payload.",
)
REGISTERED = TopicSpec(
    "complaints.registered", PARTITIONS, "complaint id", ComplaintRegistered,
    "Canonical, registered complaints.",
)
ROUTED = TopicSpec(
    "complaints.routed", PARTITIONS, "complaint id", ComplaintRouted,
    "Routing and escalation decisions.",
)
LIFECYCLE = TopicSpec(
    "complaints.lifecycle", PARTITIONS, "complaint id", CaseEvent,
    "Case events from handlers and customers.",
)
SLA = TopicSpec(
    "complaints.sla", PARTITIONS, "complaint id", SlaEvent,
    "Deadline warnings, breaches and milestones met.",
)
NOTIFICATIONS = TopicSpec(
    "complaints.notifications", PARTITIONS, "complaint id", NotificationEvent,
    "What was sent, to whom, how.",
)
DEADLETTER = TopicSpec(
    "complaints.deadletter", PARTITIONS, "complaint id when known, else none", DeadLetterEvent,
    "Rejected input: original bytes, source, service, reason.",
)

AUDIT = TopicSpec(
    "complaints.audit", PARTITIONS, "complaint id (none for a customer search)", StaffAccessed,
    "Staff reads of personal data: who read which case, when (the desk).",
)

KEYS = TopicSpec(
    "complaints.keys", PARTITIONS, "<customer key>/<data key id>", DataKeyRecorded,
    "Customers' data keys, wrapped by a master key; compacted; a tombstone erases (docs/privacy.md).",
    config=(("cleanup.policy", "compact"),),
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    INBOUND, REGISTERED, ROUTED, LIFECYCLE, SLA, NOTIFICATIONS, DEADLETTER, AUDIT, KEYS,
)
