"""The notifier's inputs: what each event owes whom, queued per transport and recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from schemas.envelope import Envelope
from schemas.events import (
    CaseAction,
    CaseEvent,
    ComplaintRegistered,
    ComplaintRouted,
    NotificationEvent,
    NotificationKind,
    SlaEvent,
    SlaOutcome,
)
from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from services.common.errors import Retry
from services.common.policy import Policy
from services.common.redis_store import rebuild_once
from services.notifier import logic
from services.notifier.messages import (
    CallbackWhy,
    CustomerRecord,
    Notification,
    acknowledgement,
    callback_task,
    internal,
    record,
    reply_route,
)
from services.notifier.metrics import NotifierMetrics
from services.notifier.ports import Clock, Customers, Outbox, Publisher
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)
TopicReader = Callable[[str], list[dict[str, Any]]]
# record statuses after which nothing more is sent
ENDED = frozenset(d.value for d in logic.ENDED) | {"outboxed", "rate_limited", "callback_required"}


class Notifier:
    """Turns input events into notifications and puts them in their transports' queues.

    - registered: keeps the customer's contact and queues the acknowledgement;
    - case events: the result and the scheduled revisit on a resolution, a notice on a reopen
      (which withdraws a revisit not yet sent), and a dissatisfied survey answer reopens the
      case (a ``reopened`` event caused by the answer, so the router escalates once);
    - routed: assignment or escalation notices to the roles of the decision;
    - sla: warnings and breaches to the roles the alert names.

    A customer message no transport can take (no e-mail, phone nor reply route on the customer's
    channel; or a WeChat or platform reply whose transport is not configured) goes to the
    ``callback`` queue, at its due time like any other (a revisit 48 hours on, withdrawn by a
    reopen): the dispatcher records it ``callback_required`` and raises a call-back task for the
    first-contact owner then, as it does for a reply the channel refuses for good.

    Every notification has a deterministic id and is queued once per id (``Outbox.enqueue``);
    each newly queued one is recorded ``queued`` (``deferred`` when due later: quiet hours, the
    revisit) on complaints.notifications before the input is acknowledged. When Redis lost the
    queues, ``check_store`` has one instance ``rebuild`` them by replaying the input topics.
    Sending is the ``Dispatcher``'s (``services.notifier.dispatch``).
    """

    def __init__(self, *, settings: NotifierSettings, policy: Policy, publisher: Publisher,
                 customers: Customers, outbox: Outbox, queues: Collection[str], clock: Clock,
                 metrics: NotifierMetrics, read: TopicReader | None = None,
                 wake: Callable[[str], None] | None = None) -> None:
        self.settings, self.policy, self.publisher = settings, policy, publisher
        self.customers, self.outbox, self.queues = customers, outbox, queues
        self.now, self.metrics, self.read = clock, metrics, read
        self.wake = wake  # tells a queue's dispatcher that something is due now
        self.token = uuid.uuid4().hex[:12]  # this instance, in the rebuild lock
        self._ended: set[str] = set()  # during a rebuild: ids already sent, failed, cancelled or held
        self._callbacks: dict[str, CallbackWhy] = {}  # during a rebuild: ids turned into call-back tasks

    # ---- inputs ---------------------------------------------------------------------

    async def on_registered(self, key: bytes | None, value: bytes) -> None:
        """Keep the customer's contact and queue the acknowledgement with the number."""
        event = ComplaintRegistered.model_validate_json(value)
        complaint = event.data
        await self.customers.save(CustomerRecord(
            complaint_id=complaint.complaint_id, contact=complaint.customer,
            correlationid=event.correlationid, reply=reply_route(complaint)))
        await self.queue([acknowledgement(complaint, templates=self.policy.notifier)], event)

    async def on_case_event(self, key: bytes | None, value: bytes) -> None:
        """Reopen on a dissatisfied answer; tell the customer of a resolution or a reopen."""
        event = CaseEvent.model_validate_json(value)
        update = event.data
        reopened = logic.reopen(event, satisfaction=self.policy.satisfaction)
        if reopened is not None:
            await self.publisher.publish(LIFECYCLE, reopened)
            return
        cid = update.complaint_id
        if logic.revisited(event):  # revisited in person: the survey message is not needed
            await self._withdraw_revisits(cid, event, f"revisited by {update.contact.kind}"
                                          if update.contact else "revisited")
            return
        if update.action not in (CaseAction.resolved, CaseAction.reopened):
            return
        known = await self.customers.get(cid)
        if known is None:
            raise Retry(f"complaint {cid} not yet known to the notifier")
        for note, not_before in logic.customer_notices(event, known.contact, templates=self.policy.notifier,
                                                       sla_scale=self.settings.sla_scale,
                                                       results=self.policy.result_templates,
                                                       reply=known.reply):
            await self.queue([note], event, not_before=not_before)
        if update.action is CaseAction.reopened:  # the revisit of the failed resolution is withdrawn
            await self._withdraw_revisits(cid, event, "case reopened before the revisit")

    async def _withdraw_revisits(self, cid: str, event: CaseEvent, detail: str) -> None:
        for note_id, queue in (await self.customers.revisits(cid)).items():
            if await self.outbox.cancel(queue, note_id):
                await self.publisher.publish(NOTIFICATIONS, record(
                    note_id, cid, NotificationKind.revisit, queue, "cancelled", now=self.now(),
                    cause=event, detail=detail))

    async def on_routed(self, key: bytes | None, value: bytes) -> None:
        """Tell the handler and owner of an assignment; department head or executives of more."""
        event = ComplaintRouted.model_validate_json(value)
        d = event.data
        values = {"handler": d.handler, "owner": d.first_contact_owner, "department": d.department,
                  "level": d.level.value, "code": d.code, "code_name": d.code_name_en,
                  "reason": d.reasons[0] if d.reasons else None}
        kind, roles = logic.recipients(d)
        await self.queue(internal(kind, roles, values, complaint_id=d.complaint_id, cause=event.id,
                                  language=self.settings.staff_language,
                                  templates=self.policy.notifier), event)

    async def on_sla(self, key: bytes | None, value: bytes) -> None:
        """Warnings and breaches to the roles the alert names."""
        event = SlaEvent.model_validate_json(value)
        a = event.data
        if a.outcome not in (SlaOutcome.warning, SlaOutcome.breached):
            return
        kind = (NotificationKind.sla_warning if a.outcome is SlaOutcome.warning
                else NotificationKind.sla_breach)
        deadline = a.due_at or a.deadline
        values = {"milestone": a.milestone.value, "deadline": deadline.isoformat() if deadline else None,
                  "handler": a.handler, "owner": a.owner, "department": a.department,
                  "level": a.level.value if a.level else None, "code": a.code}
        await self.queue(internal(kind, a.notify, values, complaint_id=a.complaint_id, cause=event.id,
                                  language=self.settings.staff_language,
                                  templates=self.policy.notifier), event)

    # ---- queueing and recording -------------------------------------------------------

    async def queue(self, notes: list[Notification], cause: Envelope, *,
                    not_before: datetime | None = None) -> None:
        """Put notifications in their transports' queues (once per id) and record it."""
        now = self.now()
        records: list[NotificationEvent] = []
        due_now: set[str] = set()  # queues given something due at once: woken after the records
        work = list(notes)
        while work:
            note = work.pop(0)
            queue = logic.queue_of(note, queues=self.queues)
            if note.notification_id in self._callbacks:  # a rebuild: its call-back task, not it
                work.append(callback_task(note, why=self._callbacks[note.notification_id],
                                          language=self.settings.staff_language))
                continue
            if note.notification_id in self._ended:
                continue  # a rebuild replays its cause: it went (or ended) already
            if note.transport == "none" and queue != logic.CALLBACK:  # wired without the callback queue
                records.append(record(note.notification_id, note.complaint_id, note.kind, "none", "failed",
                                      now=self.now(), cause=cause, note=note, detail="no contact address"))
                self.metrics.failed.labels(note.kind.value, "none", "no_address").inc()
                continue
            due = logic.due_time(note, now=now, not_before=not_before, quiet=self.policy.notifier.quiet_hours)
            meta = {"correlationid": cause.correlationid, "causationid": cause.id,
                    "queued_at": now.isoformat()}
            if await self.outbox.enqueue(queue, note, due=due.timestamp(), meta=meta):
                if note.kind is NotificationKind.revisit:
                    await self.customers.remember_revisit(note.complaint_id, note.notification_id, queue)
                deferred = due > now
                if deferred:
                    self.metrics.deferred.labels(note.kind.value, queue).inc()
                else:
                    due_now.add(queue)
                records.append(record(note.notification_id, note.complaint_id, note.kind, queue,
                                      "deferred" if deferred else "queued", now=self.now(), cause=cause,
                                      note=note, due_at=due))
        if records:  # one batched send for the records of one input
            await self.publisher.publish_many(NOTIFICATIONS, records)
        if self.wake is not None:  # after the records: a send is never recorded before its queueing
            for queue in due_now:
                self.wake(queue)

    # ---- rebuilding ---------------------------------------------------------------------

    async def check_store(self) -> None:
        """Rebuild from the topics when Redis lost the notifier's keys (its epoch marker)."""
        if self.read is None or await self.outbox.whole():
            return
        await rebuild_once(self.outbox, token=self.token, lease=self.settings.rebuild_lock_lease,
                           rebuild=self.rebuild)

    async def rebuild(self) -> None:
        """Replay the inputs through the handlers, skipping notifications that already ended.

        Contacts come back from complaints.registered; every notification whose last record on
        complaints.notifications is not sent, failed, cancelled or in_doubt is queued again
        (same id, same due time: a deferred revisit keeps its schedule).
        """
        assert self.read is not None
        read = self.read
        notes, registered, *others = await asyncio.gather(*(
            asyncio.to_thread(read, t.name) for t in (NOTIFICATIONS, REGISTERED, LIFECYCLE, ROUTED, SLA)))
        log.warning("notifier store lost its keys: rebuilding from the topics")
        self._ended = {str(r["data"]["notification_id"]) for r in notes
                       if r["data"].get("status") in ENDED}
        # a message turned into a call-back task: the task is queued again unless it ended too
        self._callbacks = {str(r["data"]["notification_id"]): logic.callback_why(r["data"].get("detail"))
                           for r in notes if r["data"].get("status") == "callback_required"}
        handlers = {"complaint.registered": self.on_registered, "case.updated": self.on_case_event,
                    "complaint.routed": self.on_routed, "sla.alert": self.on_sla}
        events = registered + sorted((e for topic in others for e in topic), key=lambda e: str(e["time"]))
        try:
            for raw in events:
                handler = handlers.get(str(raw.get("type")))
                if handler is None:
                    continue
                try:
                    await handler(None, json.dumps(raw).encode())
                except (Retry, ValueError) as exc:  # unusable input was dead-lettered the first time
                    log.warning("rebuild skipped event=%s: %s", raw.get("id"), type(exc).__name__)
        finally:
            self._ended, self._callbacks = set(), {}
        self.metrics.rebuilds.inc()
        log.warning("notifier store rebuilt from %d events", len(events))
