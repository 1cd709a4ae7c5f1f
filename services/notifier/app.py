"""Notifier wiring: what each event owes whom, durable queues per transport, dispatchers.

Handlers turn events into notifications with deterministic ids and put them in a Redis
queue of their transport (idempotent on the id), recording ``queued`` (or ``deferred``,
for quiet hours and the scheduled revisit) on ``complaints.notifications`` before the
input is acknowledged. One dispatcher per transport takes due notifications with a lease,
sends them, and records ``sent``, ``retrying`` (transient failure: back-off with jitter)
or ``failed`` (permanent, or out of attempts; also dead-lettered). A slow or failing
transport holds up only its own queue. A send whose sender died mid-send (its lease ran
out while it was ``sending``) is in doubt: resent under the same id by default, or held
as ``in_doubt`` and dead-lettered (NOTIFIER_IN_DOUBT=hold), never both.

- customer: acknowledgement (registered), result (resolved), revisit (resolved + the
  policy's delay; withdrawn by a reopen), reopened (reopened)
- inside, per role's chat channel: assignment (a decision with a handler), escalation
  (escalated or at the ceiling), executives at once for a major case, SLA warnings and
  breaches to the roles the alert names
- a satisfaction answer up to the policy's score reopens the case (a ``reopened`` event
  caused by the answer, so the router escalates once)
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope, derived_id
from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    ComplaintRegistered,
    ComplaintRouted,
    DeadLetter,
    DeadLetterEvent,
    DecisionKind,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
    SlaEvent,
    SlaOutcome,
)
from schemas.topics import DEADLETTER, LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from services.common.errors import Retry
from services.common.kafka import read_topic
from services.common.policy import Policy
from services.common.redis_store import rebuild_once
from services.common.runtime import Boundary, FaustPublisher, add_web, make_app, redis_client
from services.notifier import logic
from services.notifier.adapters import FileOutbox, RedisCustomers, RedisOutbox
from services.notifier.logic import Queued
from services.notifier.metrics import NotifierMetrics
from services.notifier.ports import Clock, Customers, Outbox, Publisher, Transport
from services.notifier.settings import NotifierSettings
from services.notifier.transports import (
    HttpTransport,
    PermanentDelivery,
    SmtpTransport,
    TransientDelivery,
    backoff,
)

log = logging.getLogger(__name__)
SERVICE = "notifier"
TopicReader = Callable[[str], list[dict[str, Any]]]
CUSTOMER = "customer"


class Notifier:
    def __init__(self, *, settings: NotifierSettings, policy: Policy, publisher: Publisher,
                 customers: Customers, outbox: Outbox, transports: dict[str, Transport],
                 clock: Clock, metrics: NotifierMetrics, read: TopicReader | None = None) -> None:
        self.settings, self.policy, self.publisher = settings, policy, publisher
        self.customers, self.outbox, self.transports = customers, outbox, transports
        self.now, self.metrics, self.read = clock, metrics, read
        self.token = uuid.uuid4().hex[:12]  # this instance, in send leases
        self._final: set[str] = set()  # during a rebuild: ids already sent, failed or cancelled

    # ---- which queue ----------------------------------------------------------------

    def queue_of(self, note: logic.Notification) -> str:
        """The transport a notification goes by: a configured one, else the file outbox."""
        wanted = {"email": "smtp", "sms": "sms-gateway", "chat": f"chat:{note.address}"}.get(note.transport)
        return wanted if wanted in self.transports else "outbox"

    # ---- inputs ---------------------------------------------------------------------

    async def on_registered(self, key: bytes | None, value: bytes) -> None:
        """Keep the customer's contact and queue the acknowledgement with the number."""
        event = ComplaintRegistered.model_validate_json(value)
        complaint = event.data
        await self.customers.save(logic.CustomerRecord(
            complaint_id=complaint.complaint_id, contact=complaint.customer,
            correlationid=event.correlationid))
        await self.queue([logic.acknowledgement(complaint, templates=self.policy.notifier)], event)

    async def on_case_event(self, key: bytes | None, value: bytes) -> None:
        event = CaseEvent.model_validate_json(value)
        update, rules = event.data, self.policy.notifier
        cid = update.complaint_id
        if update.action is CaseAction.satisfaction and update.score is not None \
                and update.score <= rules.dissatisfied_at_most:
            await self._reopen(event, update.score)
            return
        if update.action not in (CaseAction.resolved, CaseAction.reopened):
            return
        record = await self.customers.get(cid)
        if record is None:
            raise Retry(f"complaint {cid} not yet known to the notifier")
        contact = record.contact
        if update.action is CaseAction.resolved:
            result = logic.render(NotificationKind.result, contact, complaint_id=cid,
                                  templates=rules, result=update.result, cause=event.id)
            revisit = logic.render(NotificationKind.revisit, contact, complaint_id=cid,
                                   templates=rules, cause=event.id)
            await self.queue([result], event)
            await self.queue([revisit], event,
                             not_before=event.time + rules.revisit_after / self.settings.sla_scale)
            return
        # reopened: tell the customer; the revisit of the failed resolution is withdrawn
        await self.queue([logic.render(NotificationKind.reopened, contact, complaint_id=cid,
                                       templates=rules, cause=event.id)], event)
        for note_id, queue in (await self.customers.revisits(cid)).items():
            if await self.outbox.cancel(queue, note_id):
                await self._record(note_id, cid, NotificationKind.revisit, queue, "cancelled", event,
                                   detail="case reopened before the revisit")

    async def on_routed(self, key: bytes | None, value: bytes) -> None:
        """Tell the handler and owner of an assignment; department head or executives of more."""
        event = ComplaintRouted.model_validate_json(value)
        d = event.data
        values = {"handler": d.handler, "owner": d.first_contact_owner, "department": d.department,
                  "level": d.level.value, "code": d.code, "code_name": d.code_name_en,
                  "reason": d.reasons[0] if d.reasons else None}
        if d.decision in (DecisionKind.escalated, DecisionKind.at_ceiling):
            kind, roles = NotificationKind.escalation, [*d.notify, "handler"]
        else:
            kind, roles = NotificationKind.assignment, ["handler", "first_contact_owner", *d.notify]
        if d.handler is None:
            roles = [r for r in roles if r != "handler"] or ["department_head"]
        await self.queue(logic.internal(kind, roles, values, complaint_id=d.complaint_id, cause=event.id,
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
        await self.queue(logic.internal(kind, a.notify, values, complaint_id=a.complaint_id, cause=event.id,
                                        language=self.settings.staff_language,
                                        templates=self.policy.notifier), event)

    async def _reopen(self, answer: CaseEvent, score: int) -> None:
        """A dissatisfied answer reopens the case: one reopened event, caused by the answer."""
        reopened = CaseEvent.new(
            CaseUpdate(complaint_id=answer.data.complaint_id, action=CaseAction.reopened,
                       actor="customer", note=f"dissatisfied: score {score} of 5"),
            id=derived_id("reopened", answer.id), source=SERVICE, time=answer.time,
            subject=answer.data.complaint_id, cause=answer)
        await self.publisher.publish(LIFECYCLE, reopened)

    # ---- queueing and recording ---------------------------------------------------------

    async def queue(self, notes: list[logic.Notification], cause: Envelope, *,
                    not_before: datetime | None = None) -> None:
        """Put notifications in their transports' queues (once per id) and record it."""
        now = self.now()
        records: list[NotificationEvent] = []
        for note in notes:
            queue = self.queue_of(note)
            if note.notification_id in self._final:
                continue  # a rebuild replays its cause: it went (or ended) already
            if note.transport == "none":
                records.append(self._record_event(note.notification_id, note.complaint_id, note.kind,
                                                  "none", "failed", cause, note=note,
                                                  detail="no contact address"))
                self.metrics.failed.labels(note.kind.value, "none", "no_address").inc()
                continue
            due = max(filter(None, [now, not_before,
                                    logic.quiet_until(not_before or now, self.policy.notifier.quiet_hours,
                                                      note.transport) if note.role == CUSTOMER else None]))
            meta = {"correlationid": cause.correlationid, "causationid": cause.id,
                    "queued_at": now.isoformat()}
            if await self.outbox.enqueue(queue, note, due=due.timestamp(), meta=meta):
                if note.kind is NotificationKind.revisit:
                    await self.customers.remember_revisit(note.complaint_id, note.notification_id, queue)
                deferred = due > now
                if deferred:
                    self.metrics.deferred.labels(note.kind.value, queue).inc()
                records.append(self._record_event(note.notification_id, note.complaint_id, note.kind, queue,
                                                  "deferred" if deferred else "queued", cause, note=note,
                                                  due_at=due))
        if records:  # one batched send for the records of one input
            await self.publisher.publish_many(NOTIFICATIONS, records)

    async def _record(self, notification_id: str, complaint_id: str, kind: NotificationKind, queue: str,
                      status: str, cause: Envelope | None, **fields: Any) -> None:
        await self.publisher.publish(NOTIFICATIONS, self._record_event(
            notification_id, complaint_id, kind, queue, status, cause, **fields))

    def _record_event(self, notification_id: str, complaint_id: str, kind: NotificationKind, queue: str,
                      status: str, cause: Envelope | None, *, note: logic.Notification | None = None,
                      attempt: int = 0, due_at: datetime | None = None, detail: str | None = None,
                      meta: dict[str, str] | None = None) -> NotificationEvent:
        transport = f"{queue}:{note.transport}" if note else queue
        record = NotificationRecord(
            notification_id=notification_id, complaint_id=complaint_id, kind=kind, transport=transport,
            role=note.role if note else CUSTOMER,
            recipient=(logic.mask(note.address) if note.role == CUSTOMER else note.address)
            if note and note.address else "-",
            language=note.language if note else "zh", status=status,  # type: ignore[arg-type]
            attempt=attempt, due_at=due_at, detail=detail)
        # caused by an input event, or (dispatching) by the one the queue entry remembers
        return NotificationEvent.new(
            record, id=derived_id("notification-record", notification_id, status, str(attempt)),
            source=SERVICE, time=self.now(), subject=complaint_id, cause=cause,
            correlationid=(meta or {}).get("correlationid"), causationid=(meta or {}).get("causationid"))

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
        complaints.notifications is not sent, failed or cancelled is queued again (same id,
        same due time: a deferred revisit keeps its schedule).
        """
        assert self.read is not None
        read = self.read
        notes, registered, *others = await asyncio.gather(*(
            asyncio.to_thread(read, t.name) for t in (NOTIFICATIONS, REGISTERED, LIFECYCLE, ROUTED, SLA)))
        log.warning("notifier store lost its keys: rebuilding from the topics")
        self._final = {str(r["data"]["notification_id"]) for r in notes
                       if r["data"].get("status") in ("sent", "failed", "cancelled", "in_doubt")}
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
            self._final = set()
        self.metrics.rebuilds.inc()
        log.warning("notifier store rebuilt from %d events", len(events))

    # ---- dispatching ------------------------------------------------------------------

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

        await asyncio.gather(*(one(item) for item in taken if item.state in ("queued", "sending")))
        for item in taken:
            if item.state not in ("queued", "sending"):  # settled meanwhile: just drop the lease
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
        try:
            await transport.send(note)
        except TransientDelivery as exc:
            if attempt < self.settings.max_attempts:
                wait = backoff(attempt, base=self.settings.retry_base, cap=self.settings.retry_cap)
                due = self.now() + timedelta(seconds=wait)
                await self.outbox.settle(queue, note.notification_id, "retry", due=due.timestamp())
                self.metrics.retried.labels(kind, queue).inc()
                await self._record(note.notification_id, note.complaint_id, note.kind, queue, "retrying",
                                   None, note=note, attempt=attempt, due_at=due, detail=str(exc),
                                   meta=item.meta)
                return
            await self._fail(queue, item, attempt, f"{exc} (after {attempt} attempts)")
            return
        except PermanentDelivery as exc:
            await self._fail(queue, item, attempt, str(exc))
            return
        await self.outbox.settle(queue, note.notification_id, "sent")
        self.metrics.sent.labels(kind, queue).inc()
        if "queued_at" in item.meta:
            self.metrics.latency.labels(kind).observe(max(0.0, (
                self.now() - datetime.fromisoformat(item.meta["queued_at"])).total_seconds()))
        await self._record(note.notification_id, note.complaint_id, note.kind, queue, "sent", None,
                           note=note, attempt=attempt, meta=item.meta)

    async def _held(self, queue: str, item: Queued, attempt: int) -> None:
        """A sender died mid-send and the policy is not to resend: record and dead-letter it."""
        self.metrics.in_doubt.labels(item.note.kind.value, queue, "held").inc()
        reason = ("in doubt: the instance sending it died mid-send, so the transport may or may "
                  "not have it; not resent (NOTIFIER_IN_DOUBT=hold)")
        await self._letter(queue, item, attempt, "in_doubt", reason, "InDoubtDelivery")

    async def _fail(self, queue: str, item: Queued, attempt: int, reason: str) -> None:
        await self.outbox.settle(queue, item.note.notification_id, "failed")
        self.metrics.failed.labels(item.note.kind.value, queue, "permanent").inc()
        await self._letter(queue, item, attempt, "failed", reason, "PermanentDelivery")

    async def _letter(self, queue: str, item: Queued, attempt: int, status: str, reason: str,
                      error_type: str) -> None:
        note = item.note
        await self._record(note.notification_id, note.complaint_id, note.kind, queue, status, None,
                           note=note, attempt=attempt, detail=reason, meta=item.meta)
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


def transports_of(settings: NotifierSettings) -> dict[str, Transport]:
    """The file outbox, plus every configured transport, by queue name."""
    out: dict[str, Transport] = {"outbox": FileOutbox(settings.outbox_dir)}
    if settings.smtp:
        out["smtp"] = SmtpTransport(settings.smtp)
    if settings.sms_gateway:
        out["sms-gateway"] = HttpTransport("sms-gateway", settings.sms_gateway, "sms")
    for role, chat in settings.chat.items():
        out[f"chat:{role}"] = HttpTransport(f"chat:{role}", chat, chat.kind)
    return out


def build(settings: NotifierSettings, policy: Policy, *, publisher: Publisher | None = None,
          clock: Clock | None = None, registry: CollectorRegistry | None = None) -> faust.App:
    """Wire the notifier: four agents, one dispatcher per transport, /metrics, /healthz."""
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    redis = redis_client(settings)
    ttl = settings.contact_ttl_days * 86400
    publisher = publisher or FaustPublisher(app)
    transports = transports_of(settings)
    bootstrap = settings.bootstrap_list()

    def read(topic: str) -> list[dict[str, Any]]:
        return list(read_topic(bootstrap, topic))

    notifier = Notifier(
        settings=settings, policy=policy, publisher=publisher,
        customers=RedisCustomers(redis, prefix=settings.redis_prefix, ttl_seconds=ttl),
        outbox=RedisOutbox(redis, prefix=settings.redis_prefix, ttl_seconds=ttl),
        transports=transports, clock=clock or (lambda: datetime.now(UTC)),
        metrics=NotifierMetrics.create(registry), read=read)
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry,
                        max_retries=settings.missing_contact_retries)

    n = settings.agent_concurrency
    boundary.subscribe(app, "registered", notifier.on_registered, REGISTERED, concurrency=n)
    boundary.subscribe(app, "lifecycle", notifier.on_case_event, LIFECYCLE, concurrency=n)
    boundary.subscribe(app, "routed", notifier.on_routed, ROUTED, concurrency=n)
    boundary.subscribe(app, "sla", notifier.on_sla, SLA, concurrency=n)

    for queue in transports:  # each transport drains its own queue: a slow one holds up no other
        app.timer(interval=settings.dispatch_interval,
                  name=f"notifier.dispatch.{queue}")(_drainer(boundary, notifier, queue))

    @app.timer(interval=settings.store_check_interval)  # type: ignore[untyped-decorator]
    async def store() -> None:
        await boundary.guard("store check", notifier.check_store, timeout=settings.rebuild_timeout)

    add_web(app, service=SERVICE, registry=registry, check=redis.ping)
    return app


def _drainer(boundary: Boundary, notifier: Notifier, queue: str) -> Callable[[], Awaitable[None]]:
    """A timer body (no arguments: faust passes the app to a timer that takes one)."""

    async def drain() -> None:
        while await notifier.dispatch(queue) >= notifier.settings.dispatch_batch:
            pass  # a full batch: more may be due at once

    async def guarded() -> None:
        await boundary.guard(f"dispatch {queue}", drain)

    return guarded
