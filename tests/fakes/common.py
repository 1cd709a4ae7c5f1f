"""Fakes of the ports every service shares: publishing, the clock, the rebuild lock."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from schemas.envelope import Envelope
from schemas.topics import TopicSpec
from services.common.ports import Clock, Publisher, RebuildableStore


class RecordingPublisher:
    """Publisher that records what it was given, in order."""

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
    """Clock that stands still until the test advances it."""

    def __init__(self, now: datetime = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class DictRebuildable:
    """The epoch marker and the leased rebuild lock of ``services.common.redis_store.Rebuildable``.

    ``clock`` is monotonic seconds; the lease lapses as Redis's PX expiry does.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._whole = False
        self._lock: tuple[str, float] | None = None  # (token, expires at)

    def _holder(self) -> str | None:
        if self._lock is not None and self._lock[1] <= self._clock():
            self._lock = None
        return self._lock[0] if self._lock else None

    async def whole(self) -> bool:
        return self._whole

    async def mark_whole(self) -> None:
        self._whole = True

    def lose_everything(self) -> None:
        """What a Redis flush does to the store: the epoch marker (and the lock) are gone."""
        self._whole, self._lock = False, None

    async def lock_rebuild(self, token: str, seconds: float) -> bool:
        if self._holder() is not None:
            return False
        self._lock = (token, self._clock() + seconds)
        return True

    async def renew_rebuild(self, token: str, seconds: float) -> bool:
        if self._holder() != token:
            return False
        self._lock = (token, self._clock() + seconds)
        return True

    async def unlock_rebuild(self, token: str) -> None:
        if self._holder() == token:
            self._lock = None


# mypy checks each fake against its Protocol (tests/test_fakes_typecheck.py runs it)
_publisher: Publisher = RecordingPublisher()
_clock: Clock = FixedClock()
_rebuildable: RebuildableStore = DictRebuildable()
