"""Sending: one transport's queue claimed, each notification attempted, its outcome recorded."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.envelope import derived_id
from schemas.events import DeadLetter, DeadLetterEvent
from schemas.topics import DEADLETTER, NOTIFICATIONS
from services.common.errors import is_transient
from services.notifier import logic
from services.notifier.logic import OUTBOX, Queued
from services.notifier.messages import CUSTOMER, SERVICE, CallbackWhy, Status, callback_task, record
from services.notifier.metrics import NotifierMetrics
from services.notifier.opening import ErasedContact
from services.notifier.ports import (
    Clock,
    Outbox,
    Publisher,
    RecipientLimit,
    Transport,
    concurrency_of,
    idempotent,
)
from services.notifier.settings import NotifierSettings
from services.notifier.transports import (
    InDoubtDelivery,
    PermanentDelivery,
    TransientDelivery,
    Unreachable,
    backoff,
)

log = logging.getLogger(__name__)
RUNNABLE = ("queued", "sending")  # states a claimed notification is attempted in


class _Slot:
    """One of a transport's send slots, given back once (whichever comes first: the outbox took
    the answer, or the attempt ended)."""

    def __init__(self, gate: asyncio.Semaphore) -> None:
        self.gate, self.held = gate, False

    async def take(self) -> None:
        await self.gate.acquire()
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            self.gate.release()


_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("notifier_send_slot", default=None)


@dataclass
class Unsettled:
    """A transport's answer the outbox has not taken yet (Redis did not answer the settle)."""

    queue: str
    outcome: str  # sent | failed | retry | in_doubt, as ``Outbox.settle`` takes it
    due: float
    then: Callable[[], Awaitable[None]]  # its records, dead letter and metrics, once settled
    settled: bool = False


class Dispatcher:
    """Sends what is due in each transport's queue, one queue at a time per call.

    ``dispatch(queue)`` claims up to NOTIFIER_DISPATCH_BATCH due notifications (leased to this
    instance for NOTIFIER_SEND_LEASE seconds) and sends up to NOTIFIER_TRANSPORT_CONCURRENCY at
    once (below). Each send first ``begin``s (one sender at a time per notification), then settles:
    ``sent`` (``outboxed`` by the file outbox, which reaches nobody); ``retrying`` after a
    transient failure (back-off with jitter, up to NOTIFIER_MAX_ATTEMPTS); ``failed`` after a
    permanent one or the last attempt, dead-lettered.
    A send is in doubt when the transport may have the message: it was found ``sending`` under
    a dead sender's lapsed lease, or the transport raised ``InDoubtDelivery`` (no answer after
    the request or the SMTP content went). In doubt, it is resent under the same id
    (NOTIFIER_IN_DOUBT=resend: a retry like a transient failure's) or recorded ``in_doubt``
    and dead-lettered (hold), never both; a transport that declares itself ``idempotent`` (the
    file outbox: a file named by the id) is always resent. A transport takes its declared
    ``concurrency`` sends at once (the file outbox: NOTIFIER_OUTBOX_CONCURRENCY), others
    NOTIFIER_TRANSPORT_CONCURRENCY. A slow or failing transport holds up only its own queue.
    With a ``limit``, a customer message whose recipient had NOTIFIER_RECIPIENT_LIMIT others in
    the window is not sent: recorded ``rate_limited`` (final, not dead-lettered) and counted.
    A customer message that no transport can take is no plain failure (``logic.falls_back``: a
    reply on the customer's own channel, WeChat or a platform, or a customer with no contact):
    refused for good (``Unreachable``: WeChat's 48-hour window closed, the post gone; or
    ``NoTransport`` from the ``callback`` queue: no contact, the channel not configured) it is
    recorded ``callback_required`` and raises a call-back task for the first-contact owner
    (queued to their role's chat, under an id derived from the message's); refused otherwise
    (our configuration or request is wrong) or out of attempts, the same, and dead-lettered and
    counted failed too, so the operators see it. An erased customer's fails.

    The transport's answer is kept in this instance until the outbox has settled it: when Redis
    does not answer the settle (an outage), every later ``dispatch`` of the queue first settles
    what it kept, and a notification kept here is never attempted again, so one this instance
    sent is not sent twice however long the outage (its lease may lapse meanwhile, and the
    outbox would hand it to this instance, its owner, as a fresh send). Only a notification
    whose sender is gone (a restart, ``kill -9``) is in doubt, as above.
    """

    def __init__(self, *, settings: NotifierSettings, publisher: Publisher, outbox: Outbox,
                 transports: Mapping[str, Transport], clock: Clock, metrics: NotifierMetrics,
                 limit: RecipientLimit | None = None) -> None:
        self.settings, self.publisher, self.outbox = settings, publisher, outbox
        self.transports, self.now, self.metrics, self.limit = transports, clock, metrics, limit
        self.token = uuid.uuid4().hex[:12]  # this instance, in send leases
        self.unsettled: dict[str, Unsettled] = {}  # notification id -> its answer, not yet settled

    async def dispatch(self, queue: str) -> int:
        """Send what is due in one transport's queue; returns how many were attempted.

        What an earlier call could not settle is settled first (raising while Redis is still
        down: nothing is claimed then).
        """
        for nid, kept in [(n, k) for n, k in self.unsettled.items() if k.queue == queue]:
            await self._conclude(nid, kept)
        transport = self.transports[queue]
        s = self.settings
        taken = await self.outbox.claim(queue, now=self.now().timestamp(), limit=s.dispatch_batch,
                                        lease=s.send_lease)
        gate = asyncio.Semaphore(concurrency_of(transport, s.transport_concurrency))

        async def one(item: Queued) -> None:
            # a slot from the send's lease (``begin``) until the outbox has its answer: at most
            # the transport's concurrency are ever in doubt; the records of the
            # answer (a publish the broker acknowledges) are made after the slot is given back
            slot = _Slot(gate)
            await slot.take()
            _SLOT.set(slot)  # this task's own context: _conclude gives the slot back
            try:
                await self._attempt(queue, transport, item)
            finally:
                slot.give_back()

        runnable = [item for item in taken
                    if item.state in RUNNABLE and item.note.notification_id not in self.unsettled]
        # every attempt runs to its end before this returns, even when one fails (an outage):
        # none is left sending in the background while the next call claims
        outcomes = await asyncio.gather(*(one(item) for item in runnable), return_exceptions=True)
        for item in taken:
            if item.state not in RUNNABLE:  # settled meanwhile: just drop the lease
                await self.outbox.release(queue, item.note.notification_id)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return len(taken)

    async def _settle(self, queue: str, item: Queued, outcome: str, then: Callable[[], Awaitable[None]], *,
                      due: float = 0) -> None:
        """Settle the transport's answer, then ``then`` (its records); kept until both are done."""
        nid = item.note.notification_id
        kept = self.unsettled[nid] = Unsettled(queue, outcome, due, then)
        try:
            await self._conclude(nid, kept)
        except Exception as exc:
            log.warning("notification %s id=%s queue=%s: settling or recording it failed (%s); kept "
                        "and finished before the queue's next claim, never sent again", outcome, nid,
                        queue, type(exc).__name__)
            raise

    async def _conclude(self, nid: str, kept: Unsettled) -> None:
        """Settle (until Redis answers), then record (until the broker answers); a bug in the
        latter is not retried for ever: the queue must go on."""
        try:
            if not kept.settled:
                await self.outbox.settle(kept.queue, nid, kept.outcome, due=kept.due)
                kept.settled = True
            slot = _SLOT.get()
            if slot is not None:  # the outbox has the answer: the next send may begin
                slot.give_back()
            await kept.then()
        except Exception as exc:
            if kept.settled and not is_transient(exc):
                self.unsettled.pop(nid, None)
            raise
        self.unsettled.pop(nid, None)

    async def _attempt(self, queue: str, transport: Transport, item: Queued) -> None:
        note, attempt = item.note, item.attempts + 1
        kind = note.kind.value
        if note.notification_id in self.unsettled:
            return  # answered already: its settlement waits for Redis, it is never sent again
        go = await self.outbox.begin(queue, note.notification_id, token=self.token,
                                     now=self.now().timestamp(), lease=self.settings.send_lease,
                                     in_doubt=self._in_doubt_policy(transport))
        if go == "doubt":
            await self._held(queue, item, attempt)
            return
        if go == "resend":  # its sender died mid-send: the transport may have it already
            self.metrics.in_doubt.labels(kind, queue, "resent").inc()
            log.log(logging.INFO if idempotent(transport) else logging.WARNING,
                    "resending in-doubt notification complaint=%s id=%s kind=%s queue=%s",
                    note.complaint_id, note.notification_id, kind, queue)
        elif go != "go":
            return  # sent or settled meanwhile, or another instance is sending it right now
        # a customer message counts against its recipient's limit (the callback queue sends nothing)
        limited = self.limit if note.role == CUSTOMER and queue != logic.CALLBACK else None
        if limited is not None and not await limited.admit(
                logic.recipient_key(note.address), note.notification_id, now=self.now().timestamp()):
            await self._limited(queue, item, attempt)
            return
        try:
            await transport.send(note)
        except InDoubtDelivery as exc:
            await self._in_doubt(queue, transport, item, attempt, str(exc))
        except TransientDelivery as exc:
            await self._retry(queue, item, attempt, exc)
        except PermanentDelivery as exc:
            if logic.falls_back(note) and not isinstance(exc, ErasedContact):
                if isinstance(exc, Unreachable):  # the customer's side, not ours: no dead letter
                    await self._callback(queue, item, attempt, exc.why, str(exc), letter=False)
                else:
                    await self._callback(queue, item, attempt, "refused", str(exc), letter=True)
            else:
                await self._fail(queue, item, attempt, str(exc))
        except Exception as exc:  # not a transport's known answer: it may or may not have gone
            log.error("transport %s raised %s (its text may hold personal data: not logged) complaint=%s "
                      "id=%s", queue, type(exc).__name__, note.complaint_id, note.notification_id)
            await self._in_doubt(queue, transport, item, attempt, f"{type(exc).__name__} from the transport")
        else:
            await self._sent(queue, item, attempt)

    async def _sent(self, queue: str, item: Queued, attempt: int) -> None:
        kind = item.note.kind.value

        async def then() -> None:
            if queue == OUTBOX:  # written to a file: it reached nobody, so it is no notice (nor a SLA stop)
                await self._record(queue, item, "outboxed", attempt)
                self.metrics.outboxed.labels(kind).inc()
                return
            await self._record(queue, item, "sent", attempt)
            self.metrics.sent.labels(kind, queue).inc()
            if "queued_at" in item.meta:
                self.metrics.latency.labels(kind).observe(max(0.0, (
                    self.now() - datetime.fromisoformat(item.meta["queued_at"])).total_seconds()))

        await self._settle(queue, item, "sent", then)

    def _in_doubt_policy(self, transport: Transport) -> str:
        """NOTIFIER_IN_DOUBT, or ``resend`` for a transport whose repeat reaches nobody twice."""
        return "resend" if idempotent(transport) else self.settings.in_doubt

    async def _in_doubt(self, queue: str, transport: Transport, item: Queued, attempt: int,
                        cause: str) -> None:
        """The transport may have it: held in doubt, or retried under the same id, by the policy."""
        if self._in_doubt_policy(transport) == "hold":
            async def then() -> None:
                await self._held(queue, item, attempt, reason=(
                    f"in doubt: {cause}, so the transport may or may not have it; not resent "
                    "(NOTIFIER_IN_DOUBT=hold)"))

            await self._settle(queue, item, "in_doubt", then)
            return
        self.metrics.in_doubt.labels(item.note.kind.value, queue, "resent").inc()
        await self._retry(queue, item, attempt, InDoubtDelivery(cause))

    async def _retry(self, queue: str, item: Queued, attempt: int, exc: Exception) -> None:
        """Back in the queue after a back-off, or failed when that was the last attempt."""
        kind = item.note.kind.value
        if attempt < self.settings.max_attempts:
            wait = backoff(attempt, base=self.settings.retry_base, cap=self.settings.retry_cap)
            due = self.now() + timedelta(seconds=wait)

            async def then() -> None:
                await self._record(queue, item, "retrying", attempt, due_at=due, detail=str(exc))
                self.metrics.retried.labels(kind, queue).inc()

            await self._settle(queue, item, "retry", then, due=due.timestamp())
            return
        if logic.falls_back(item.note):
            await self._callback(queue, item, attempt, "undeliverable", f"{exc} (after {attempt} attempts)",
                                 letter=True)
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
        await self._letter(queue, item, attempt, "in_doubt", reason, "InDoubtDelivery")
        self.metrics.in_doubt.labels(item.note.kind.value, queue, "held").inc()

    async def _limited(self, queue: str, item: Queued, attempt: int) -> None:
        """Over the recipient's limit: not sent, settled for good, recorded rate_limited."""
        note, s = item.note, self.settings
        reason = (f"rate limited: its recipient had {s.recipient_limit} customer messages in this "
                  f"{s.recipient_window} s window (NOTIFIER_RECIPIENT_LIMIT); not sent")

        async def then() -> None:
            await self._record(queue, item, "rate_limited", attempt, detail=reason)
            self.metrics.rate_limited.labels(note.kind.value, queue).inc()
            log.warning("notification rate_limited complaint=%s id=%s kind=%s queue=%s", note.complaint_id,
                        note.notification_id, note.kind.value, queue)

        await self._settle(queue, item, "failed", then)

    async def _fail(self, queue: str, item: Queued, attempt: int, reason: str) -> None:
        async def then() -> None:
            await self._letter(queue, item, attempt, "failed", reason, "PermanentDelivery")
            self.metrics.failed.labels(item.note.kind.value, queue, "permanent").inc()

        await self._settle(queue, item, "failed", then)

    async def _callback(self, queue: str, item: Queued, attempt: int, why: CallbackWhy, reason: str, *,
                        letter: bool) -> None:
        """The customer's channel cannot take it: settled for good, recorded callback_required, and
        a call-back task queued for the first-contact owner (dead-lettered too with ``letter``)."""
        note, now = item.note, self.now()
        task = callback_task(note, why=why, language=self.settings.staff_language)
        task_queue = logic.queue_of(task, queues=self.transports)

        async def then() -> None:
            # the task first: once the record says callback_required, the task is queued (same id
            # whenever this runs again, its record too: a repeat has the same event id)
            await self.outbox.enqueue(task_queue, task, due=now.timestamp(),
                                      meta={**item.meta, "queued_at": now.isoformat()})
            await self.publisher.publish(NOTIFICATIONS, record(
                task.notification_id, task.complaint_id, task.kind, task_queue, "queued", now=now,
                cause=None, note=task, due_at=now, meta=item.meta))
            await self._record(queue, item, "callback_required", attempt, detail=f"{why}: {reason}")
            self.metrics.callbacks.labels(note.kind.value, queue, why).inc()
            if letter:
                await self._dead_letter(item, reason, "PermanentDelivery")
                self.metrics.failed.labels(note.kind.value, queue, "permanent").inc()
            log.warning("notification callback_required complaint=%s id=%s kind=%s queue=%s: %s; call-back "
                        "task %s queued", note.complaint_id, note.notification_id, note.kind.value, queue,
                        reason, task.notification_id)

        await self._settle(queue, item, "failed", then)

    async def _letter(self, queue: str, item: Queued, attempt: int, status: Status, reason: str,
                      error_type: str) -> None:
        note = item.note
        await self._record(queue, item, status, attempt, detail=reason)
        await self._dead_letter(item, reason, error_type)
        log.warning("notification %s complaint=%s id=%s kind=%s queue=%s: %s", status, note.complaint_id,
                    note.notification_id, note.kind.value, queue, reason)

    async def _dead_letter(self, item: Queued, reason: str, error_type: str) -> None:
        note = item.note
        letter = DeadLetter(
            service=SERVICE, source=f"notification:{note.notification_id}", reason=reason,
            error_type=error_type, original_key=None,
            original=base64.b64encode(note.model_dump_json(exclude={"address", "body"}).encode()).decode(),
            failed_at=self.now())
        await self.publisher.publish(DEADLETTER, DeadLetterEvent.new(
            letter, id=derived_id("deadletter", note.notification_id), source=SERVICE, time=self.now(),
            subject=note.complaint_id, correlationid=item.meta.get("correlationid"),
            causationid=item.meta.get("causationid")))
