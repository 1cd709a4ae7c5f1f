"""Sending: one transport's queue claimed, each notification attempted, its outcome recorded."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from schemas.envelope import derived_id
from schemas.events import DeadLetter, DeadLetterEvent
from schemas.topics import DEADLETTER, NOTIFICATIONS
from services.notifier import logic
from services.notifier.logic import OUTBOX, Queued
from services.notifier.messages import CUSTOMER, SERVICE, Status, record
from services.notifier.metrics import NotifierMetrics
from services.notifier.ports import Clock, Outbox, Publisher, RecipientLimit, Transport
from services.notifier.settings import NotifierSettings
from services.notifier.transports import InDoubtDelivery, PermanentDelivery, TransientDelivery, backoff

log = logging.getLogger(__name__)
RUNNABLE = ("queued", "sending")  # states a claimed notification is attempted in


class Dispatcher:
    """Sends what is due in each transport's queue, one queue at a time per call.

    ``dispatch(queue)`` claims up to NOTIFIER_DISPATCH_BATCH due notifications (leased to this
    instance for NOTIFIER_SEND_LEASE seconds) and sends up to NOTIFIER_TRANSPORT_CONCURRENCY at
    once. Each send first ``begin``s (one sender at a time per notification), then settles:
    ``sent`` (``outboxed`` by the file outbox, which reaches nobody); ``retrying`` after a
    transient failure (back-off with jitter, up to NOTIFIER_MAX_ATTEMPTS); ``failed`` after a
    permanent one or the last attempt, dead-lettered.
    A send is in doubt when the transport may have the message: it was found ``sending`` under
    a dead sender's lapsed lease, or the transport raised ``InDoubtDelivery`` (no answer after
    the request or the SMTP content went). In doubt, it is resent under the same id
    (NOTIFIER_IN_DOUBT=resend: a retry like a transient failure's) or recorded ``in_doubt``
    and dead-lettered (hold), never both. A slow or failing transport holds up only its own queue.
    With a ``limit``, a customer message whose recipient had NOTIFIER_RECIPIENT_LIMIT others in
    the window is not sent: recorded ``rate_limited`` (final, not dead-lettered) and counted.
    """

    def __init__(self, *, settings: NotifierSettings, publisher: Publisher, outbox: Outbox,
                 transports: Mapping[str, Transport], clock: Clock, metrics: NotifierMetrics,
                 limit: RecipientLimit | None = None) -> None:
        self.settings, self.publisher, self.outbox = settings, publisher, outbox
        self.transports, self.now, self.metrics, self.limit = transports, clock, metrics, limit
        self.token = uuid.uuid4().hex[:12]  # this instance, in send leases

    async def dispatch(self, queue: str) -> int:
        """Send what is due in one transport's queue; returns how many were attempted."""
        transport = self.transports[queue]
        s = self.settings
        taken = await self.outbox.claim(queue, now=self.now().timestamp(), limit=s.dispatch_batch,
                                        lease=s.send_lease)
        gate = asyncio.Semaphore(s.transport_concurrency)

        async def one(item: Queued) -> None:
            async with gate:
                await self._attempt(queue, transport, item)

        await asyncio.gather(*(one(item) for item in taken if item.state in RUNNABLE))
        for item in taken:
            if item.state not in RUNNABLE:  # settled meanwhile: just drop the lease
                await self.outbox.release(queue, item.note.notification_id)
        return len(taken)

    async def _attempt(self, queue: str, transport: Transport, item: Queued) -> None:
        note, attempt = item.note, item.attempts + 1
        kind = note.kind.value
        go = await self.outbox.begin(queue, note.notification_id, token=self.token,
                                     now=self.now().timestamp(), lease=self.settings.send_lease,
                                     in_doubt=self.settings.in_doubt)
        if go == "doubt":
            await self._held(queue, item, attempt)
            return
        if go == "resend":  # its sender died mid-send: the transport may have it already
            self.metrics.in_doubt.labels(kind, queue, "resent").inc()
            log.warning("resending in-doubt notification complaint=%s id=%s kind=%s queue=%s",
                        note.complaint_id, note.notification_id, kind, queue)
        elif go != "go":
            return  # sent or settled meanwhile, or another instance is sending it right now
        if self.limit is not None and note.role == CUSTOMER and not await self.limit.admit(
                logic.recipient_key(note.address), note.notification_id, now=self.now().timestamp()):
            await self._limited(queue, item, attempt)
            return
        try:
            await transport.send(note)
        except InDoubtDelivery as exc:
            if self.settings.in_doubt == "hold":
                await self.outbox.settle(queue, note.notification_id, "in_doubt")
                await self._held(queue, item, attempt, reason=(
                    f"in doubt: {exc}, so the transport may or may not have it; not resent "
                    "(NOTIFIER_IN_DOUBT=hold)"))
                return
            self.metrics.in_doubt.labels(kind, queue, "resent").inc()
            await self._retry(queue, item, attempt, exc)
            return
        except TransientDelivery as exc:
            await self._retry(queue, item, attempt, exc)
            return
        except PermanentDelivery as exc:
            await self._fail(queue, item, attempt, str(exc))
            return
        await self.outbox.settle(queue, note.notification_id, "sent")
        if queue == OUTBOX:  # written to a file: it reached nobody, so it is no notice (nor a SLA stop)
            self.metrics.outboxed.labels(kind).inc()
            await self._record(queue, item, "outboxed", attempt)
            return
        self.metrics.sent.labels(kind, queue).inc()
        if "queued_at" in item.meta:
            self.metrics.latency.labels(kind).observe(max(0.0, (
                self.now() - datetime.fromisoformat(item.meta["queued_at"])).total_seconds()))
        await self._record(queue, item, "sent", attempt)

    async def _retry(self, queue: str, item: Queued, attempt: int, exc: Exception) -> None:
        """Back in the queue after a back-off, or failed when that was the last attempt."""
        note, kind = item.note, item.note.kind.value
        if attempt < self.settings.max_attempts:
            wait = backoff(attempt, base=self.settings.retry_base, cap=self.settings.retry_cap)
            due = self.now() + timedelta(seconds=wait)
            await self.outbox.settle(queue, note.notification_id, "retry", due=due.timestamp())
            self.metrics.retried.labels(kind, queue).inc()
            await self._record(queue, item, "retrying", attempt, due_at=due, detail=str(exc))
            return
        await self._fail(queue, item, attempt, f"{exc} (after {attempt} attempts)")

    async def _record(self, queue: str, item: Queued, status: Status, attempt: int, *,
                      due_at: datetime | None = None, detail: str | None = None) -> None:
        note = item.note
        await self.publisher.publish(NOTIFICATIONS, record(
            note.notification_id, note.complaint_id, note.kind, queue, status, now=self.now(), cause=None,
            note=note, attempt=attempt, due_at=due_at, detail=detail, meta=item.meta))

    async def _held(self, queue: str, item: Queued, attempt: int, *, reason: str = (
            "in doubt: the instance sending it died mid-send, so the transport may or may not "
            "have it; not resent (NOTIFIER_IN_DOUBT=hold)")) -> None:
        """A send is in doubt and the policy is not to resend: record and dead-letter it."""
        self.metrics.in_doubt.labels(item.note.kind.value, queue, "held").inc()
        await self._letter(queue, item, attempt, "in_doubt", reason, "InDoubtDelivery")

    async def _limited(self, queue: str, item: Queued, attempt: int) -> None:
        """Over the recipient's limit: not sent, settled for good, recorded rate_limited."""
        note, s = item.note, self.settings
        await self.outbox.settle(queue, note.notification_id, "failed")
        self.metrics.rate_limited.labels(note.kind.value, queue).inc()
        reason = (f"rate limited: its recipient had {s.recipient_limit} customer messages in this "
                  f"{s.recipient_window} s window (NOTIFIER_RECIPIENT_LIMIT); not sent")
        await self._record(queue, item, "rate_limited", attempt, detail=reason)
        log.warning("notification rate_limited complaint=%s id=%s kind=%s queue=%s", note.complaint_id,
                    note.notification_id, note.kind.value, queue)

    async def _fail(self, queue: str, item: Queued, attempt: int, reason: str) -> None:
        await self.outbox.settle(queue, item.note.notification_id, "failed")
        self.metrics.failed.labels(item.note.kind.value, queue, "permanent").inc()
        await self._letter(queue, item, attempt, "failed", reason, "PermanentDelivery")

    async def _letter(self, queue: str, item: Queued, attempt: int, status: Status, reason: str,
                      error_type: str) -> None:
        note = item.note
        await self._record(queue, item, status, attempt, detail=reason)
        letter = DeadLetter(
            service=SERVICE, source=f"notification:{note.notification_id}", reason=reason,
            error_type=error_type, original_key=None,
            original=base64.b64encode(note.model_dump_json(exclude={"address", "body"}).encode()).decode(),
            failed_at=self.now())
        await self.publisher.publish(DEADLETTER, DeadLetterEvent.new(
            letter, id=derived_id("deadletter", note.notification_id), source=SERVICE, time=self.now(),
            subject=note.complaint_id, correlationid=item.meta.get("correlationid"),
            causationid=item.meta.get("causationid")))
        log.warning("notification %s complaint=%s id=%s kind=%s queue=%s: %s", status, note.complaint_id,
                    note.notification_id, note.kind.value, queue, reason)
