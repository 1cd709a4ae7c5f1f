"""One fake per port, keeping faith with the real adapters' contracts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from schemas.envelope import Envelope
from schemas.topics import TopicSpec
from services.notifier.logic import CustomerRecord, Notification


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, Envelope]] = []

    async def publish(self, topic: TopicSpec, event: Envelope) -> None:
        self.published.append((topic.name, event))

    async def publish_many(self, topic: TopicSpec, events: Sequence[Envelope]) -> None:
        for event in events:
            await self.publish(topic, event)

    def of_type(self, event_type: str) -> list[Envelope]:
        return [e for _, e in self.published if e.type == event_type]


class FixedClock:
    def __init__(self, now: datetime = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class DictCustomers:
    def __init__(self) -> None:
        self.records: dict[str, CustomerRecord] = {}

    async def save(self, record: CustomerRecord) -> None:
        self.records[record.complaint_id] = record

    async def get(self, complaint_id: str) -> CustomerRecord | None:
        return self.records.get(complaint_id)


class SetSentLog:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def was_sent(self, notification_id: str) -> bool:
        return notification_id in self.ids

    async def mark_sent(self, notification_id: str) -> None:
        self.ids.add(notification_id)


class CountingTransport:
    name = "counting"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)


class DictRegistrations:
    def __init__(self) -> None:
        self.claims: dict[str, bytes] = {}

    async def claim(self, dedupe_key: str, registered_event: bytes) -> bytes | None:
        if dedupe_key in self.claims:
            return self.claims[dedupe_key]
        self.claims[dedupe_key] = registered_event
        return None

    async def claim_many(self, claims: list[tuple[str, bytes]]) -> list[bytes | None]:
        return [await self.claim(k, v) for k, v in claims]


class DictTimelines:
    def __init__(self) -> None:
        self.events: dict[str, dict[str, bytes]] = {}

    async def add(self, complaint_id: str, event_id: str, event: bytes) -> None:
        self.events.setdefault(complaint_id, {}).setdefault(event_id, event)

    async def add_many(self, entries: list[tuple[str, str, bytes]]) -> None:
        for complaint_id, event_id, event in entries:
            await self.add(complaint_id, event_id, event)

    async def get(self, complaint_id: str) -> list[bytes]:
        return list(self.events.get(complaint_id, {}).values())


class DictFirstContacts:
    def __init__(self) -> None:
        from services.router.ports import PriorComplaint

        self.anchors: dict[str, PriorComplaint] = {}

    async def claim(self, customer_key: str, prior, *, window_seconds: int):  # type: ignore[no-untyped-def]
        if customer_key in self.anchors:
            return self.anchors[customer_key]
        self.anchors[customer_key] = prior
        return None
