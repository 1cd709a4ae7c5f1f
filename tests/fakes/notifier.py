"""In-memory fakes of the notifier's ports, keeping faith with RedisCustomers and RedisOutbox.

DictOutbox runs every operation through ``services.notifier.logic.step``, the Python statement
of RedisOutbox's Lua scripts; tests/test_contract_notifier.py holds the two together and runs
the same assertions against each fake and its adapter. Neither
fake expires anything (Redis keeps contacts and notifications for NOTIFIER_CONTACT_TTL_DAYS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, cast

from services.notifier import logic
from services.notifier.logic import Queued
from services.notifier.messages import CustomerRecord, Notification
from services.notifier.ports import Customers, Outbox, RecipientLimit, Transport
from tests.fakes.common import DictRebuildable


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

class DictCustomers:
    """Contacts and scheduled revisits in dicts."""

    def __init__(self) -> None:
        self.records: dict[str, CustomerRecord] = {}
        self.scheduled: dict[str, dict[str, str]] = {}

    async def save(self, record: CustomerRecord) -> None:
        self.records[record.complaint_id] = record

    async def get(self, complaint_id: str) -> CustomerRecord | None:
        return self.records.get(complaint_id)

    async def remember_revisit(self, complaint_id: str, notification_id: str, queue: str) -> None:
        self.scheduled.setdefault(complaint_id, {})[notification_id] = queue

    async def revisits(self, complaint_id: str) -> dict[str, str]:
        return dict(self.scheduled.get(complaint_id, {}))

    def lose_everything(self) -> None:
        """What a Redis flush does to the contacts."""
        self.records, self.scheduled = {}, {}


class DictOutbox(DictRebuildable):
    """The delivery queues as a ``logic.Book``, plus the rebuild markers (``DictRebuildable``).

    ``lock_clock`` (monotonic seconds) is the rebuild lock's, as in DictRebuildable.
    """

    def __init__(self, *, lock_clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(lock_clock)
        self.book = logic.Book()
        self.payloads: dict[str, tuple[Notification, dict[str, str]]] = {}

    def _step(self, op: logic.Operation) -> logic.Answer:
        self.book, answer = logic.step(self.book, op)
        return answer

    async def enqueue(self, queue: str, note: Notification, *, due: float, meta: dict[str, str]) -> bool:
        new = self._step(logic.Enqueue(queue, note.notification_id, due)) is True
        if new:
            self.payloads[note.notification_id] = (note, dict(meta))
        return new

    async def claim(self, queue: str, *, now: float, limit: int, lease: float) -> list[Queued]:
        ids = self._step(logic.Claim(queue, now, limit, lease))
        assert isinstance(ids, tuple)
        out = []
        for i in ids:
            note, meta = self.payloads[i]
            entry = self.book.entries[i]
            out.append(Queued(note, entry.state.value, entry.attempts, dict(meta)))
        return out

    async def settle(self, queue: str, notification_id: str, outcome: str, *, due: float = 0) -> str | int:
        assert outcome in ("sent", "failed", "retry", "in_doubt"), outcome
        answer = self._step(logic.Settle(queue, notification_id, cast(logic.Outcome, outcome), due))
        assert isinstance(answer, str | int)
        return answer

    async def begin(self, queue: str, notification_id: str, *, token: str, now: float, lease: float,
                    in_doubt: str = "resend") -> str:
        policy: Literal["resend", "hold"] = "hold" if in_doubt == "hold" else "resend"  # as the Lua does
        answer = self._step(logic.Begin(queue, notification_id, token, now, lease, policy))
        assert isinstance(answer, str)
        return answer

    async def release(self, queue: str, notification_id: str) -> None:
        self._step(logic.Release(queue, notification_id))

    async def cancel(self, queue: str, notification_id: str) -> bool:
        return self._step(logic.Cancel(queue, notification_id)) is True

    async def state(self, notification_id: str) -> str | None:
        entry = self.book.entries.get(notification_id)
        return entry.state.value if entry else None

    async def depth(self, queue: str) -> int:
        return sum(q == queue for q, _ in self.book.due) + sum(q == queue for q, _ in self.book.leased)

    def lose_everything(self) -> None:
        """What a Redis flush does: the queues go with the epoch marker and the lock."""
        super().lose_everything()
        self.book, self.payloads = logic.Book(), {}


class DictRecipientLimit:
    """Notification ids per (recipient, window) in sets, by ``logic.admit`` (as the Lua of
    RedisRecipientLimit); nothing expires (Redis drops a window's set after it)."""

    def __init__(self, *, limit: int, window: int) -> None:
        self.limit, self.window = limit, window
        self.counted: dict[tuple[str, int], set[str]] = {}

    async def admit(self, recipient: str, notification_id: str, *, now: float) -> bool:
        counted = self.counted.setdefault((recipient, logic.rate_window(now, window=self.window)), set())
        if not logic.admit(counted, notification_id, limit=self.limit):
            return False
        counted.add(notification_id)
        return True


# mypy checks each fake against its port's Protocol
_customers: Customers = DictCustomers()
_outbox: Outbox = DictOutbox()
_transport: Transport = CountingTransport()
_limit: RecipientLimit = DictRecipientLimit(limit=1, window=60)
