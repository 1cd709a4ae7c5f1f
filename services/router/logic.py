"""Routing rules: department, level, owner, escalation and handler booking of a complaint. No I/O.

``first_route``, ``escalate`` and ``reclassify`` return a ``Proposal``: the next routing
decision (a full snapshot with its reasons) and, when a handler must be booked, which
department and level to book in. ``case_effect`` and ``sla_effect`` say what an input
causes. ``book``, ``fill`` and ``release`` state the booking rule that the Redis scripts
of ``services.router.adapters`` apply atomically, putting the chosen handler into the
decision where the ``HANDLER`` tokens stand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from schemas.events import (
    CaseAction,
    CaseEvent,
    Complaint,
    DecisionKind,
    Level,
    Nature,
    RoutingDecision,
    SlaEvent,
    SlaOutcome,
)
from services.common.errors import Rejected
from services.common.policy import RouterPolicy, SatisfactionPolicy
from services.router.classify import assess, classify, code_reasons
from services.router.taxonomy import Taxonomy
from services.router.textmodel import SeverityModel, TextModel

if TYPE_CHECKING:  # ports import BookingMode from here
    from services.router.ports import PriorComplaint

HANDLER = "@@handler@@"
"""Stands for the booked handler's id in a proposed decision; replaced when booked."""
HANDLER_REASON = "@@handler-reason@@"
"""Stands for the booking's reason in a proposed decision; replaced when booked."""

_NEXT = {Level.L1: Level.L2, Level.L2: Level.L3}


@dataclass(frozen=True)
class Booking:
    """Book the least-loaded on-duty handler of ``department`` at ``level`` (or ``handler``)."""

    department: str
    level: Level
    keep: bool = False  # keep the handler the case holds, if it holds one
    handler: str | None = None  # staff named this handler: book them, whatever their load


@dataclass(frozen=True)
class Proposal:
    """The next decision; with a booking, its handler and handler reason are tokens."""

    decision: RoutingDecision
    booking: Booking | None


def classified_text(complaint: Complaint) -> str:
    """The text the router classifies: the subject, then the description."""
    return f"{complaint.subject}\n{complaint.description}"


def first_route(complaint: Complaint, *, rules: RouterPolicy, taxonomy: Taxonomy,
                prior: PriorComplaint | None = None, model: TextModel | None = None,
                severity_model: SeverityModel | None = None) -> Proposal:
    """The first decision for a registered complaint.

    ``prior`` is the customer's anchor complaint within the repeat window: its owner
    stays the customer's single point of contact (首接负责制) and the repeat is a
    severity signal.
    """
    repeat = prior is not None and prior.complaint_id != complaint.complaint_id
    result = classify(classified_text(complaint), taxonomy=taxonomy, model=model)
    ctype = taxonomy.get(result.code)
    review = result.needs_review(taxonomy.review_threshold)
    department = rules.review_department if review else ctype.department
    severity, reasons = assess(complaint, rules.severity, repeat=repeat, model=severity_model)
    reasons += code_reasons(result, taxonomy, review=review, review_department=rules.review_department)
    level = rules.levels[severity]
    reasons.append(f"level {level.value}: by severity {severity.value}")
    owner = complaint.first_contact
    if repeat and prior is not None:
        owner = prior.owner
        reasons.append(f"first-contact owner {owner}: owns the customer's earlier complaint "
                       f"{prior.complaint_id}")
    else:
        reasons.append(f"first-contact owner {owner}: received it first")
    booking: Booking | None = Booking(department, level)
    handler: str | None = HANDLER
    if complaint.nature is Nature.praise:
        booking, handler = None, None
        reasons.append("handler: none, praise is thanked and recorded")
    else:
        reasons.append(HANDLER_REASON)
    notify = list(rules.notify[level])
    if notify:
        reasons.append(f"notify {', '.join(notify)} at once: routed at {level.value}")
    decision = RoutingDecision(
        complaint_id=complaint.complaint_id, decision=DecisionKind.routed, revision=1,
        nature=complaint.nature, received_at=complaint.received_at, code=ctype.code,
        code_name_zh=ctype.name_zh, code_name_en=ctype.name_en, confidence=result.confidence,
        matched_terms=result.matched, review=review, severity=severity, department=department,
        level=level, handler=handler, first_contact_owner=owner,
        repeat_of=prior.complaint_id if repeat and prior else None, notify=notify,
        reasons=reasons,
    )
    return Proposal(decision, booking)


def escalate(current: RoutingDecision, *, trigger: str, why: str, rules: RouterPolicy) -> Proposal:
    """One level up (L1 -> L2 -> L3); at L3, the ceiling, executives are told instead."""
    nxt = _NEXT.get(current.level)
    if nxt is None:
        notify = list(rules.notify[Level.L3])
        decision = current.model_copy(update={
            "decision": DecisionKind.at_ceiling, "revision": current.revision + 1,
            "trigger": trigger, "notify": notify, "handler": HANDLER,
            "reasons": [f"{why}: already at L3, the ceiling; level kept, "
                        f"{', '.join(notify) or 'nobody'} notified", HANDLER_REASON]})
        # a reopened case may have released its handler: book one again if so
        return Proposal(decision, Booking(current.department, Level.L3, keep=True))
    notify = list(rules.notify[nxt])
    reasons = [f"escalated {current.level.value} -> {nxt.value}: {why}"]
    if notify:
        reasons.append(f"notify {', '.join(notify)}")
    reasons.append(HANDLER_REASON)
    decision = current.model_copy(update={
        "decision": DecisionKind.escalated, "revision": current.revision + 1, "level": nxt,
        "handler": HANDLER, "trigger": trigger, "notify": notify, "reasons": reasons})
    return Proposal(decision, Booking(current.department, nxt))


def reclassify(current: RoutingDecision, *, code: str, actor: str, taxonomy: Taxonomy) -> Proposal:
    """A reviewer's code: the case moves to that code's department at its current level."""
    try:
        ctype = taxonomy.get(code)
    except KeyError:
        raise Rejected(f"data.code: {code} is not a code of taxonomy {taxonomy.version}") from None
    reasons = [f"reclassified by {actor}: {current.code} -> {ctype.code} {ctype.name_en} / "
               f"{ctype.name_zh}; department {ctype.department}"]
    update: dict[str, Any] = {
        "decision": DecisionKind.reclassified, "revision": current.revision + 1,
        "code": ctype.code, "code_name_zh": ctype.name_zh, "code_name_en": ctype.name_en,
        "confidence": 1.0, "matched_terms": [], "review": False, "department": ctype.department,
        "trigger": "reclassified", "notify": [],
    }
    reasons.append(HANDLER_REASON)
    decision = current.model_copy(update={**update, "handler": HANDLER, "reasons": reasons})
    # the same department keeps the case's handler; another books one of its own
    return Proposal(decision, Booking(ctype.department, current.level,
                                  keep=ctype.department == current.department))


# ---- what an input causes ---------------------------------------------------------------

RELEASING = (CaseAction.resolved, CaseAction.closed)


@dataclass(frozen=True)
class Release:
    """Give up the handler load the case holds, once per ``trigger``."""

    trigger: str


@dataclass(frozen=True)
class Reclassify:
    """Re-route the case to the department of the reviewer's ``code``."""

    triggers: tuple[str, ...]
    code: str
    actor: str


@dataclass(frozen=True)
class Escalate:
    """Escalate once for all of ``triggers``; ``trigger`` and ``why`` go into the decision."""

    triggers: tuple[str, ...]
    trigger: str
    why: str


@dataclass(frozen=True)
class Ignore:
    """No decision; ``reason`` labels complaints_router_ignored_total."""

    reason: str


Effect = Release | Reclassify | Escalate | Ignore


def case_effect(event: CaseEvent, *, satisfaction: SatisfactionPolicy) -> Effect:
    """What a lifecycle event causes: a release, a re-route, an escalation or nothing."""
    update = event.data
    if update.action in RELEASING:
        return Release(event.id)
    if update.action is CaseAction.reclassified and update.code is not None:
        return Reclassify((event.id,), update.code, update.actor)
    if update.action is CaseAction.satisfaction and satisfaction.dissatisfied(update.score):
        return Escalate((event.id,), "dissatisfied",
                        f"customer dissatisfied (score {update.score} of 5)")
    contact = update.contact
    if (update.action is CaseAction.contacted and contact is not None
            and satisfaction.dissatisfied(contact.score)):  # the answer given on a revisit contact
        return Escalate((event.id,), "dissatisfied",
                        f"customer dissatisfied (score {contact.score} of 5, {contact.kind} revisit)")
    if update.action is CaseAction.reopened:
        # a reopen caused by a dissatisfied answer is the same trigger: escalate once
        cause = (event.causationid,) if event.causationid else ()
        return Escalate((event.id, *cause), "reopened", f"case reopened by {update.actor}")
    return Ignore(f"action_{update.action.value}")


def sla_effect(event: SlaEvent, *, rules: RouterPolicy) -> Escalate | Ignore:
    """What an SLA alert causes: a breach of a milestone in ``escalate_on_breach`` escalates."""
    alert = event.data
    if alert.outcome is not SlaOutcome.breached:
        return Ignore(f"sla_{alert.outcome.value}")
    if alert.milestone not in rules.escalate_on_breach:
        return Ignore("sla_breach_not_escalating")
    due = alert.due_at or alert.deadline
    why = f"{alert.milestone.value} deadline{f' {due.isoformat()}' if due else ''} breached"
    # one escalation per milestone and cycle (a reopen's new resolve cycle may breach again)
    return Escalate((event.id, f"sla:{alert.milestone.value}:{alert.cycle}"),
                    f"sla_breach:{alert.milestone.value}", why)


# ---- the booking rule (applied atomically by the Lua scripts of adapters.py) ------------

class BookingMode(StrEnum):
    """What a commit does with the case's handler."""

    book = "book"  # release the held handler, then book the least-loaded candidate
    keep = "keep"  # keep the held handler; with none held, as ``book``
    none = "none"  # leave the held handler and every load as they are


def booking_mode(booking: Booking | None) -> BookingMode:
    """The mode a proposal's booking commits with."""
    if booking is None:
        return BookingMode.none
    return BookingMode.keep if booking.keep else BookingMode.book


class Seat(StrEnum):
    """What a commit did about the handler, which says how the decision's tokens are filled."""

    kept = "kept"              # the held handler stays: "handler <id>: keeps the case"
    booked = "booked"          # a candidate was booked: the assigned reason
    unassigned = "unassigned"  # no candidate had room: handler null, the unassigned reason
    untouched = "untouched"    # mode none: nothing to fill


@dataclass(frozen=True)
class Booked:
    """A booking's outcome: the seat, the handler the case holds after, every load after."""

    seat: Seat
    held: str | None
    loads: dict[str, int]  # handler -> open cases; no handler has 0
    load: int = 0          # booked: the handler's open cases before this booking


def unbook(handler: str | None, loads: Mapping[str, int]) -> dict[str, int]:
    """The loads after ``handler`` gives up one case; a load that falls to 0 or below goes."""
    after = dict(loads)
    if handler:
        left = after.get(handler, 0) - 1
        if left > 0:
            after[handler] = left
        else:
            after.pop(handler, None)
    return after


def book(mode: BookingMode, *, held: str | None, candidates: Sequence[tuple[str, int]],
         loads: Mapping[str, int]) -> Booked:
    """The booking rule: keep the held handler, or release it and book the least loaded.

    A candidate (handler id, capacity) has room when its capacity is 0 (unlimited) or
    above its load; of those with the least load the first listed wins. The held
    handler's load is released before the candidates' loads are compared.
    """
    if mode is BookingMode.none:
        return Booked(Seat.untouched, held, dict(loads))
    if mode is BookingMode.keep and held:
        return Booked(Seat.kept, held, dict(loads))
    after = unbook(held, loads)
    best: tuple[str, int] | None = None
    for handler, capacity in candidates:
        load = after.get(handler, 0)
        if (capacity == 0 or load < capacity) and (best is None or load < best[1]):
            best = (handler, load)
    if best is None:
        return Booked(Seat.unassigned, None, after)
    after[best[0]] = best[1] + 1
    return Booked(Seat.booked, best[0], after, load=best[1])


def fill(template: str, booked: Booked, *, assigned_reason: str, unassigned_reason: str) -> str:
    """The decision event with its tokens replaced: ``assigned_reason`` formats (%s id, %d load)."""
    if booked.seat is Seat.untouched:
        return template
    if booked.seat is Seat.kept:
        handler, reason = f'"{booked.held}"', f"handler {booked.held}: keeps the case"
    elif booked.seat is Seat.booked:
        handler, reason = f'"{booked.held}"', assigned_reason % (booked.held, booked.load)
    else:
        handler, reason = "null", unassigned_reason
    return template.replace(f'"{HANDLER}"', handler).replace(HANDLER_REASON, reason)


ReleaseStatus = Literal["released", "duplicate", "unknown"]


def release(*, applied: bool, known: bool, held: str | None,
            loads: Mapping[str, int]) -> tuple[ReleaseStatus, dict[str, int]]:
    """The release rule on resolved / closed: once per trigger, a known case gives up its handler."""
    if applied:
        return "duplicate", dict(loads)
    if not known:
        return "unknown", dict(loads)
    return "released", unbook(held, loads)
