"""What the notifier needs from outside: contacts, a record of sends, transports."""

from __future__ import annotations

from typing import Protocol

from services.common.ports import Clock, Publisher, RebuildableStore
from services.notifier.logic import Queued
from services.notifier.messages import CustomerRecord, Notification

__all__ = ["Clock", "Customers", "Outbox", "Publisher", "RecipientLimit", "Transport", "concurrency_of",
           "idempotent"]


class Customers(Protocol):
    """Contact details per complaint, kept from its registration (personal data)."""

    async def save(self, record: CustomerRecord) -> None: ...

    async def get(self, complaint_id: str) -> CustomerRecord | None: ...

    async def remember_revisit(self, complaint_id: str, notification_id: str, queue: str) -> None: ...

    async def revisits(self, complaint_id: str) -> dict[str, str]: ...


class Outbox(RebuildableStore, Protocol):
    """Durable delivery queues per transport; see ``services.notifier.adapters.RedisOutbox``."""

    async def enqueue(self, queue: str, note: Notification, *, due: float, meta: dict[str, str]) -> bool: ...

    async def claim(self, queue: str, *, now: float, limit: int, lease: float) -> list[Queued]: ...

    async def settle(self, queue: str, notification_id: str, outcome: str, *,
                     due: float = 0) -> str | int: ...

    async def begin(self, queue: str, notification_id: str, *, token: str, now: float,
                    lease: float, in_doubt: str = "resend") -> str: ...

    async def release(self, queue: str, notification_id: str) -> None: ...

    async def cancel(self, queue: str, notification_id: str) -> bool: ...


class RecipientLimit(Protocol):
    """Customer messages per recipient and window (``logic.admit``); see RedisRecipientLimit."""

    async def admit(self, recipient: str, notification_id: str, *, now: float) -> bool: ...


class Transport(Protocol):
    """Delivers a notification; raises TransientDelivery, InDoubtDelivery (it may have reached
    the server: no answer came after it was handed over) or PermanentDelivery on failure.

    A transport may also declare (``concurrency_of`` and ``idempotent`` below read them, with
    these defaults): ``concurrency``, how many of its sends may be in flight at
    once (None: NOTIFIER_TRANSPORT_CONCURRENCY, a server's limit); ``idempotent``, True when a
    repeat under the same notification id cannot reach anyone twice (a file named by the id), so
    a send left in doubt is simply made again, whatever NOTIFIER_IN_DOUBT says (False)."""

    name: str

    async def send(self, notification: Notification) -> None: ...


def concurrency_of(transport: Transport, default: int) -> int:
    """How many sends the transport takes at once: its own ``concurrency``, else ``default``
    (NOTIFIER_TRANSPORT_CONCURRENCY)."""
    declared = getattr(transport, "concurrency", None)
    return declared if isinstance(declared, int) and declared >= 1 else default


def idempotent(transport: Transport) -> bool:
    """True when the transport declares that a repeat under the same id reaches nobody twice."""
    return getattr(transport, "idempotent", False) is True
