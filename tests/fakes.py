"""One fake per port, keeping faith with the real adapters' contracts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from schemas.envelope import Envelope
from schemas.topics import TopicSpec
from services.notifier.logic import Notification


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


class CountingTransport:
    """Counts deliveries; ``failures`` raise first (in order); ``delay`` stands for a slow
    server; with ``gate``, every send waits until the test opens it."""

    def __init__(self, name: str = "counting", failures: list[Exception] | None = None,
                 delay: float = 0.0, gate: asyncio.Event | None = None) -> None:
        self.name, self.failures, self.delay, self.gate = name, list(failures or []), delay, gate
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
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
