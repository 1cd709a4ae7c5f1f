"""What the notifier needs from outside: contacts, a record of sends, transports."""

from __future__ import annotations

from typing import Protocol

from services.common.ports import Clock, Publisher
from services.notifier.logic import CustomerRecord, Notification

__all__ = ["Clock", "Customers", "Publisher", "SentLog", "Transport"]


class Customers(Protocol):
    """Contact details per complaint, kept from its registration (personal data)."""

    async def save(self, record: CustomerRecord) -> None: ...

    async def get(self, complaint_id: str) -> CustomerRecord | None: ...


class SentLog(Protocol):
    """Which notification ids a transport has accepted, so none is sent twice."""

    async def was_sent(self, notification_id: str) -> bool: ...

    async def mark_sent(self, notification_id: str) -> None: ...


class Transport(Protocol):
    """Delivers a notification; raises on failure. Must tolerate a repeated id."""

    name: str

    async def send(self, notification: Notification) -> None: ...
