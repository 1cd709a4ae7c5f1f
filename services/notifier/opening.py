"""A customer's sealed address opened at the last moment, just for the transport (docs/privacy.md).

Every transport is wrapped: a notification whose address is sealed gets it opened with the
customer's data key and handed to the transport in clear (in memory only). A customer erased
meanwhile (``complaints erase-customer``) has no key: the send fails for good, recorded
``failed`` with a reason that starts with "erased" (PermanentDelivery), and nothing crashes.
"""

from __future__ import annotations

from typing import Protocol

from services.common import sealing
from services.notifier.messages import Notification
from services.notifier.ports import Transport, idempotent
from services.notifier.transports import PermanentDelivery

ERASED = "erased"


class ErasedContact(PermanentDelivery):
    """The customer was erased: their address is unreadable, and nobody is to reach them (no
    call-back task either)."""


class DataKeys(Protocol):
    async def data_key(self, subject: str, kid: str) -> bytes | None: ...


class OpeningTransport:
    """A transport that opens a sealed customer address before ``inner`` sends; it declares what
    ``inner`` declares (its concurrency, whether a repeat reaches anyone twice)."""

    def __init__(self, inner: Transport, keys: DataKeys) -> None:
        self.inner, self.keys = inner, keys
        self.name = inner.name
        self.concurrency: int | None = getattr(inner, "concurrency", None)
        self.idempotent = idempotent(inner)

    async def send(self, notification: Notification) -> None:
        sealed = notification.sealed_address
        if sealed is None:
            await self.inner.send(notification)
            return
        dek = await self.keys.data_key(sealed.subject, sealed.value.kid)
        if dek is None:
            raise ErasedContact(f"{ERASED}: the customer's data key was deleted (complaints "
                                    "erase-customer); the address cannot be read")
        try:
            address = sealing.open_field(dek, sealed.subject, sealed.field, sealed.value)
        except sealing.Unreadable as exc:
            raise PermanentDelivery(f"sealed address does not open: {exc}") from None
        await self.inner.send(notification.model_copy(update={"address": address, "sealed_address": None}))


def opening(transports: dict[str, Transport], keys: DataKeys) -> dict[str, Transport]:
    return {queue: OpeningTransport(t, keys) for queue, t in transports.items()}
