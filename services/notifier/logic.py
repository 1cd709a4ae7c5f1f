"""To whom, by which queue and when; a queued notification's delivery states. No I/O.

The rules: transports and due times chosen (quiet hours), what a resolution, a reopen or a
routing decision owes whom, a dissatisfied answer turned into a reopen; and (``Delivery``,
``step``) the state machine that RedisOutbox's Lua scripts keep. What a notification says
(templates, masking) is in ``services.notifier.messages``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Literal, NamedTuple, assert_never, cast, get_args
from zoneinfo import ZoneInfo

from schemas.envelope import derived_id
from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Contact,
    DecisionKind,
    NotificationKind,
    RoutingDecision,
)
from services.common.policy import NotifierPolicy, Policy, QuietHours, SatisfactionPolicy
from services.common.resolution import ResultTemplate
from services.notifier.messages import CUSTOMER, SERVICE, CallbackWhy, ReplyRoute, render, result_text
from services.notifier.messages import Notification as Notification  # re-exported: tests.fakes


class Queued(NamedTuple):
    """A notification taken from a queue for one delivery attempt."""

    note: Notification
    state: str
    attempts: int
    meta: dict[str, str]


def quiet_until(at: datetime, quiet: QuietHours | None, transport: str) -> datetime | None:
    """When a message of ``transport`` may go if ``at`` falls in the quiet hours; else None."""
    if quiet is None or transport not in quiet.transports:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = at.astimezone(zone)
    start, end = (time.fromisoformat(quiet.start), time.fromisoformat(quiet.end))
    now = local.time().replace(tzinfo=None)
    inside = start <= now < end if start < end else (now >= start or now < end)
    if not inside:
        return None
    day = local.date() if (start < end or now < end) else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=zone).astimezone(UTC)


# ---- which queue, when, and what an event owes -------------------------------------

OUTBOX = "outbox"  # the file outbox's queue: what goes by it reaches nobody ("outboxed")
CALLBACK = "callback"  # customer messages no transport takes: each becomes a call-back task when due
WECHAT = "wechat"  # the WeChat official account's customer-service messages


def platform_queue(platform: str) -> str:
    """The queue of replies on a social or review platform (NOTIFIER_PLATFORMS' key)."""
    return f"platform:{platform}"


def queue_of(note: Notification, *, queues: Collection[str]) -> str:
    """The queue a notification goes by: its transport's if configured, else the file outbox; a
    customer with no contact, or a reply on their channel (WeChat, a platform) without its
    transport: ``CALLBACK`` (when wired: the service always is), never the file outbox."""
    if note.transport in ("wechat", "platform", "none"):
        wanted = {"wechat": WECHAT, "none": None}.get(
            note.transport, platform_queue(note.address.split(":", 1)[0]))
        if wanted is not None and wanted in queues:
            return wanted
        return CALLBACK if CALLBACK in queues else OUTBOX
    queue = {"email": "smtp", "sms": "sms-gateway", "chat": f"chat:{note.address}"}.get(note.transport)
    return queue if queue is not None and queue in queues else OUTBOX


def callback_why(detail: object) -> CallbackWhy:
    """Why a message became a call-back task, from its ``callback_required`` record's detail."""
    why = str(detail or "").split(":", 1)[0]
    return cast(CallbackWhy, why) if why in get_args(CallbackWhy) else "refused"


def falls_back(note: Notification) -> bool:
    """Whether a message that cannot go becomes a call-back task rather than a failure: a reply on
    the customer's own channel (WeChat, a platform), the only way the customer left to reach them,
    or a message to a customer who left none."""
    return note.role == CUSTOMER and note.transport in ("wechat", "platform", "none")


def staff_roles(policy: Policy) -> set[str]:
    """Every role an internal notice may go to under ``policy`` (see ``recipients``, the SLA's notify)."""
    roles = {"handler", "first_contact_owner", "department_head"}
    roles.update(r for named in policy.router.notify.values() for r in named)
    roles.update(r for rule in policy.sla.milestones.values()
                 for named in rule.notify.values() for r in named)
    return roles


def outbox_stand_ins(queues: Collection[str], *, roles: Collection[str]) -> list[str]:
    """The channels without a transport among ``queues``, that the file outbox would take, by the
    setting that would configure each."""
    wanted = {"NOTIFIER_SMTP (e-mail)": "smtp", "NOTIFIER_SMS_GATEWAY (SMS)": "sms-gateway",
              **{f"NOTIFIER_CHAT.{r}": f"chat:{r}" for r in sorted(roles)}}
    return [setting for setting, queue in wanted.items() if queue not in queues]


# ---- per-recipient limit of customer messages -------------------------------------------


def recipient_key(address: str) -> str:
    """What a recipient's messages are counted under: a hash of the address, never the address."""
    return hashlib.sha256(f"notifier-recipient:{address.strip().lower()}".encode()).hexdigest()[:32]


def rate_window(now: float, *, window: int) -> int:
    """The fixed window ``now`` falls in (windows of ``window`` seconds from the epoch)."""
    return int(now // window)


def admit(counted: Collection[str], notification_id: str, *, limit: int) -> bool:
    """Whether a notification may go to a recipient who had ``counted`` ones in the window: one
    counted already may (a retry or a resend is no new message), else while under ``limit``.
    What RedisRecipientLimit's Lua does."""
    return notification_id in counted or len(counted) < limit


def due_time(note: Notification, *, now: datetime, not_before: datetime | None,
             quiet: QuietHours | None) -> datetime:
    """When a notification may go: not before now nor ``not_before``; a customer's not in quiet hours."""
    hushed = quiet_until(not_before or now, quiet, note.transport) if note.role == CUSTOMER else None
    return max(t for t in (now, not_before, hushed) if t is not None)


def answer_score(event: CaseEvent) -> int | None:
    """The satisfaction answer an event carries: a survey answer, or one given on a revisit contact."""
    update = event.data
    if update.action is CaseAction.satisfaction:
        return update.score
    if update.action is CaseAction.contacted and update.contact is not None:
        return update.contact.score
    return None


def reopen(answer: CaseEvent, *, satisfaction: SatisfactionPolicy) -> CaseEvent | None:
    """The ``reopened`` event a dissatisfied answer causes (id derived from it); else None."""
    update, score = answer.data, answer_score(answer)
    if not satisfaction.dissatisfied(score):
        return None
    return CaseEvent.new(
        CaseUpdate(complaint_id=update.complaint_id, action=CaseAction.reopened, actor=CUSTOMER,
                   note=f"dissatisfied: score {score} of 5"),
        id=derived_id("reopened", answer.id), source=SERVICE, time=answer.time,
        subject=update.complaint_id, cause=answer)


def revisited(event: CaseEvent) -> bool:
    """True for a contact that reached the customer for the revisit (call-back, visit, chat)."""
    contact = event.data.contact
    return (event.data.action is CaseAction.contacted and contact is not None and contact.reached
            and contact.purpose == "revisit")


class Scheduled(NamedTuple):
    """A notification to queue, not before ``not_before`` (None: at once)."""

    note: Notification
    not_before: datetime | None = None


def customer_notices(event: CaseEvent, contact: Contact, *, templates: NotifierPolicy,
                     sla_scale: float, results: Mapping[str, ResultTemplate] | None = None,
                     reply: ReplyRoute | None = None) -> list[Scheduled]:
    """A resolution owes the result now and the revisit after the policy's delay; a reopen, a notice.

    ``reply``: the channel's reply route, for a customer with neither e-mail nor phone."""
    update, cid = event.data, event.data.complaint_id
    if update.action is CaseAction.resolved:
        result = result_text(update, contact.language, results=results or {})
        return [Scheduled(render(NotificationKind.result, contact, complaint_id=cid, templates=templates,
                                 result=result, cause=event.id, reply=reply)),
                Scheduled(render(NotificationKind.revisit, contact, complaint_id=cid, templates=templates,
                                 cause=event.id, reply=reply),
                          event.time + templates.revisit_after / sla_scale)]
    if update.action is CaseAction.reopened:
        return [Scheduled(render(NotificationKind.reopened, contact, complaint_id=cid, templates=templates,
                                 cause=event.id, reply=reply))]
    return []


def recipients(decision: RoutingDecision) -> tuple[NotificationKind, list[str]]:
    """Which notice a routing decision owes to which roles (no handler booked: the department head)."""
    if decision.decision in (DecisionKind.escalated, DecisionKind.at_ceiling):
        kind, roles = NotificationKind.escalation, [*decision.notify, "handler"]
    else:
        kind, roles = NotificationKind.assignment, ["handler", "first_contact_owner", *decision.notify]
    if decision.handler is None:
        roles = [r for r in roles if r != "handler"] or ["department_head"]
    return kind, roles


# ---- delivery states: what RedisOutbox's Lua scripts do, stated in Python ------------


class Delivery(StrEnum):
    """A queued notification's state (the ``state`` field of its hash in RedisOutbox).

    enqueue -> queued; begin: queued -> sending (leased to one instance); settle: sending ->
    sent | failed | queued again (a retry has no state of its own: ``attempts`` counts it, and
    its record says ``retrying``); cancel: queued -> cancelled. A begin that finds it sending
    under another owner's lapsed lease resends it, or (NOTIFIER_IN_DOUBT=hold) makes it in_doubt;
    an in_doubt one becomes sent if its slow sender settles it so. While the last sender's lease
    runs (even after it settled a retry) any other instance's begin is 'busy'. ``deferred`` is a
    record status only: queued with a later due time.
    """

    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    cancelled = "cancelled"
    in_doubt = "in_doubt"


SETTLED = frozenset({Delivery.sent, Delivery.failed, Delivery.cancelled})
ENDED = SETTLED | {Delivery.in_doubt}  # begin answers 'done'


@dataclass(frozen=True)
class Entry:
    """One notification's hash: state, attempts settled, the instance sending it and till when."""

    state: Delivery
    attempts: int = 0
    owner: str | None = None
    owner_until: float = 0.0


@dataclass(frozen=True)
class Book:
    """The whole outbox: entries by id, and per (queue, id) the due time and the send lease end.

    Not modelled: Redis expires each hash NOTIFIER_CONTACT_TTL_DAYS after it was queued.
    """

    entries: Mapping[str, Entry] = field(default_factory=dict)
    due: Mapping[tuple[str, str], float] = field(default_factory=dict)  # queue:<name> sorted set
    leased: Mapping[tuple[str, str], float] = field(default_factory=dict)  # inflight:<name>


@dataclass(frozen=True)
class Enqueue:
    """Queue a notification (RedisOutbox.enqueue)."""

    queue: str
    notification_id: str
    due: float


@dataclass(frozen=True)
class Claim:
    """Take due notifications and lapsed leases of a queue (RedisOutbox.claim)."""

    queue: str
    now: float
    limit: int  # at least 1
    lease: float


@dataclass(frozen=True)
class Begin:
    """Start sending, leased to ``token`` (RedisOutbox.begin)."""

    queue: str
    notification_id: str
    token: str
    now: float
    lease: float
    in_doubt: Literal["resend", "hold"] = "resend"


Outcome = Literal["sent", "failed", "retry", "in_doubt"]


@dataclass(frozen=True)
class Settle:
    """Record a send's outcome (RedisOutbox.settle)."""

    queue: str
    notification_id: str
    outcome: Outcome
    due: float = 0


@dataclass(frozen=True)
class Release:
    """Drop a claim, changing nothing else (RedisOutbox.release)."""

    queue: str
    notification_id: str


@dataclass(frozen=True)
class Cancel:
    """Withdraw a queued notification (RedisOutbox.cancel)."""

    queue: str
    notification_id: str


Operation = Enqueue | Claim | Begin | Settle | Release | Cancel
Answer = bool | str | int | tuple[str, ...] | None


def step(book: Book, op: Operation) -> tuple[Book, Answer]:
    """One RedisOutbox operation: the book after it and what the method returns.

    enqueue: True if new; claim: ids, lapsed leases first, then due ones (by score, then id);
    begin: 'go' | 'resend' | 'doubt' | 'busy' | 'done'; settle: the attempt count, or the
    state it kept ('sent', 'failed', 'cancelled', 'in_doubt'; 'gone' if unknown); release:
    None; cancel: True if it was queued.
    """
    entries, due, leased = dict(book.entries), dict(book.due), dict(book.leased)
    entry = entries.get(getattr(op, "notification_id", ""))
    match op:
        case Enqueue(queue, nid, at):
            if entry is not None:
                return book, False
            entries[nid], due[queue, nid] = Entry(Delivery.queued), at
        case Claim(queue, now, limit, lease):
            def ripe(zset: dict[tuple[str, str], float], n: int) -> list[str]:
                hits = sorted((s, m) for (q, m), s in zset.items() if q == queue and s <= now)
                return [m for _, m in hits[:n]]
            expired = ripe(leased, limit)
            fresh = ripe(due, limit - len(expired)) if limit > len(expired) else []
            for m in fresh:
                del due[queue, m]
            for m in expired + fresh:
                leased[queue, m] = now + lease
            return Book(entries, due, leased), tuple(m for m in expired + fresh if m in entries)
        case Begin(queue, nid, token, now, lease, policy):
            if entry is None or entry.state in ENDED:
                return book, "done"
            if entry.owner is not None and entry.owner != token and entry.owner_until > now:
                return book, "busy"
            verdict = "go"
            if entry.state is Delivery.sending and entry.owner != token:
                if policy == "hold":
                    entries[nid] = replace(entry, state=Delivery.in_doubt)
                    leased.pop((queue, nid), None)
                    return Book(entries, due, leased), "doubt"
                verdict = "resend"
            entries[nid] = replace(entry, state=Delivery.sending, owner=token, owner_until=now + lease)
            leased[queue, nid] = now + lease
            return Book(entries, due, leased), verdict
        case Settle(queue, nid, outcome, at):
            leased.pop((queue, nid), None)
            if entry is None or entry.state in SETTLED or (entry.state is Delivery.in_doubt
                                                            and outcome != "sent"):
                return Book(entries, due, leased), entry.state.value if entry else "gone"
            if outcome == "retry":
                entries[nid], due[queue, nid] = replace(entry, state=Delivery.queued), at
            else:
                entries[nid] = replace(entry, state=Delivery(outcome))
            entries[nid] = replace(entries[nid], attempts=entry.attempts + 1)
            return Book(entries, due, leased), entry.attempts + 1
        case Release(queue, nid):
            leased.pop((queue, nid), None)
            return Book(entries, due, leased), None
        case Cancel(queue, nid):
            if entry is None or entry.state is not Delivery.queued:
                return book, False
            entries[nid] = replace(entry, state=Delivery.cancelled)
            due.pop((queue, nid), None)
        case _:
            assert_never(op)
    return Book(entries, due, leased), True
