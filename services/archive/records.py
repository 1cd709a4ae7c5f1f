"""What the archive keeps of an event and of a case: the row types, and the parse at the edge.

An event from any complaint topic is parsed with its pydantic model (by its ``type``) and
summarised into an ``ArchivedEvent``: its facts as JSON, personal data removed. The archive
keeps the customer's keyed identity (``customer_key``) and masked contact forms, never a
name, phone number, e-mail address or the customer's own words (subject, description, survey
notes: only their lengths); staff free text (notes, results, delivery details) is kept with
any e-mail address or phone number in it masked. No I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from schemas.envelope import Envelope
from schemas.events import (
    CaseEvent,
    ComplaintRegistered,
    ComplaintRouted,
    NotificationEvent,
    SlaEvent,
)
from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA, TopicSpec
from services.common.errors import Rejected
from services.common.privacy import mask

INPUTS: tuple[TopicSpec, ...] = (REGISTERED, ROUTED, LIFECYCLE, SLA, NOTIFICATIONS)
"""The topics the archive consumes, each carrying one event type."""
TOPIC_OF_TYPE: dict[str, str] = {spec.value.EVENT_TYPE: spec.name for spec in INPUTS}
CUSTOMER = "customer"
CONTACT_ORDER = ("phone", "email", "wechat")
"""The order of a masked contact's parts (``Contact.masked()``) where they are joined for reading."""

Archivable = Annotated[
    ComplaintRegistered | ComplaintRouted | CaseEvent | SlaEvent | NotificationEvent,
    Field(discriminator="type"),
]
_ARCHIVABLE: TypeAdapter[Archivable] = TypeAdapter(Archivable)

JsonValue = Any
"""A JSON-serialisable value (str, int, float, bool, None, list, dict)."""


@dataclass(frozen=True)
class ArchivedEvent:
    """One row of the audit trail: an event's facts without personal data."""

    event_id: str
    complaint_id: str
    topic: str
    type: str
    time: datetime
    actor: str
    action: str
    causation_id: str | None
    summary: dict[str, JsonValue] = field(hash=False)

    def key(self) -> tuple[datetime, str]:
        """Order of the trail: event time, then event id (a tie-break that every reader shares)."""
        return self.time, self.event_id


@dataclass(frozen=True)
class CaseRow:
    """One complaint's current record, folded from its archived events."""

    complaint_id: str
    status: str
    channel: str | None = None
    nature: str | None = None
    language: str | None = None
    received_at: datetime | None = None
    registered_at: datetime | None = None
    customer_key: str | None = None
    contact_masked: str | None = None
    demand: str | None = None
    product: str | None = None
    store_id: str | None = None
    first_contact_owner: str | None = None
    code: str | None = None
    code_name_zh: str | None = None
    code_name_en: str | None = None
    department: str | None = None
    severity: str | None = None
    level: str | None = None
    highest_level: str | None = None
    handler: str | None = None
    review: bool | None = None
    repeat_of: str | None = None
    routed_revision: int | None = None
    escalation_count: int = 0
    acknowledged_at: datetime | None = None
    plan_decided_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    result: str | None = None
    reopen_count: int = 0
    satisfaction_score: int | None = None
    satisfaction_at: datetime | None = None
    co_handlers: str | None = None  # "handler@department, @department" in the order added
    plan_measures: int | None = None
    solution: str | None = None
    compensation_amount: Decimal | None = None
    compensation_currency: str | None = None
    party_at_fault: str | None = None
    root_cause: str | None = None
    approved_by: str | None = None
    last_contact_at: datetime | None = None
    last_contact_kind: str | None = None
    last_contact_purpose: str | None = None
    last_contact_reached: bool | None = None
    assessment_decision: str | None = None  # a suggestion's: adopted | declined
    assessment_reason: str | None = None
    assessed_at: datetime | None = None
    assessed_by: str | None = None
    policy_version: str | None = None
    event_count: int = 0
    last_event_time: datetime | None = None


@dataclass(frozen=True)
class SlaRow:
    """One milestone clock of one cycle of a complaint: its final outcome."""

    complaint_id: str
    milestone: str
    cycle: int
    severity: str | None
    clock: str | None
    started_at: datetime | None
    deadline: datetime | None
    outcome: str  # met | breached | cancelled | open
    on_time: bool | None
    met_at: datetime | None
    breached_at: datetime | None
    cancelled_at: datetime | None
    policy_version: str | None
    warnings: int
    last_event_time: datetime


@dataclass(frozen=True)
class NotificationRow:
    """One notification: where it went and how its delivery ended (or stands)."""

    notification_id: str
    complaint_id: str
    kind: str
    role: str
    transport: str
    recipient: str
    language: str
    status: str
    attempts: int
    queued_at: datetime | None
    sent_at: datetime | None
    updated_at: datetime


# ---- privacy ------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# a date (kept as it is) or a run of 7+ digits with separators (a phone number: masked)
_PHONE = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?)|\+?\d[\d ()-]{5,}\d")


def scrub(text: str | None) -> str | None:
    """Staff free text with every e-mail address and phone number in it masked."""
    if text is None:
        return None

    def phone(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group())
        if m.group("date") or len(digits) < 7:
            return m.group()
        return mask(("+" if m.group().startswith("+") else "") + digits)

    return _PHONE.sub(phone, _EMAIL.sub(lambda m: mask(m.group()), text))


# ---- the edge ------------------------------------------------------------------------


def parse(value: bytes | str | dict[str, Any], *, topic: str | None = None) -> Envelope:
    """Parse a record of an input topic with its model; bad input raises (dead-lettered).

    Raises ``ValidationError`` for an unknown type or a malformed event, ``Rejected`` for
    an event on a topic that does not carry its type.
    """
    if isinstance(value, dict):
        event: Envelope = _ARCHIVABLE.validate_python(value)
    else:
        event = _ARCHIVABLE.validate_json(value)
    if topic is not None and TOPIC_OF_TYPE[event.type] != topic:
        raise Rejected(f"a {event.type} event does not belong on {topic}")
    return event


def summarise(event: Envelope) -> ArchivedEvent:
    """The audit-trail row of an input event: its facts, personal data removed."""
    actor, action, summary = _facts(event)
    return ArchivedEvent(
        event_id=event.id, complaint_id=event.data.complaint_id, topic=TOPIC_OF_TYPE[event.type],
        type=event.type, time=event.time.astimezone(UTC), actor=actor, action=action,
        causation_id=event.causationid, summary=summary)


def _facts(event: Envelope) -> tuple[str, str, dict[str, JsonValue]]:
    """(actor, action or kind, summary) of an event."""
    if isinstance(event, ComplaintRegistered):
        c = event.data
        contact: dict[str, JsonValue] = dict(c.customer.masked())  # sealed contacts carry masked forms
        return event.source, "registered", {
            "channel": c.channel.value, "nature": c.nature.value, "received_at": _iso(c.received_at),
            "customer_key": c.customer_key, "contact_masked": contact, "named": c.customer.named,
            "language": c.customer.language, "first_contact": c.first_contact,
            "subject_chars": len(c.subject), "description_chars": len(c.description),
            "demand": c.demand.value if c.demand else None, "product": c.product,
            "order_id": c.order_id, "store_id": c.store_id, "occurred_at": _iso(c.occurred_at),
            "purchase_time": _iso(c.purchase_time), "evidence": len(c.evidence),
            "details": sorted(c.details),
        }
    if isinstance(event, ComplaintRouted):
        return event.source, event.data.decision.value, event.data.model_dump(
            mode="json", exclude={"complaint_id"})
    if isinstance(event, CaseEvent):
        u = event.data
        said: dict[str, JsonValue] = {}
        if u.note is not None:  # the customer's words: their length only; staff notes, scrubbed
            said = {"note_chars": len(u.note)} if u.actor == CUSTOMER else {"note": scrub(u.note)}
        return u.actor, u.action.value, {
            **said, "result": scrub(u.result), "score": u.score, "code": u.code, **_work(event)}
    if isinstance(event, SlaEvent):
        return event.source, event.data.outcome.value, event.data.model_dump(
            mode="json", exclude={"complaint_id"})
    if isinstance(event, NotificationEvent):
        n = event.data
        summary = n.model_dump(mode="json", exclude={"complaint_id", "detail"})
        return event.source, n.status, {**summary, "detail": scrub(n.detail)}
    raise Rejected(f"not an archived event type: {event.type}")


def _work(event: CaseEvent) -> dict[str, JsonValue]:
    """The structured work an event carries (only the parts it has), staff text scrubbed."""
    u = event.data
    out: dict[str, JsonValue] = {}
    if u.assignment is not None:
        a = u.assignment
        out["assignment"] = {"handler": a.handler, "department": a.department, "reason": scrub(a.reason)}
    if u.plan is not None:
        out["plan"] = {"summary": scrub(u.plan.summary), "measures": [
            {"description": scrub(m.description), "owner": m.owner, "due": m.due.isoformat()}
            for m in u.plan.measures]}
    if u.outcome is not None:
        o = u.outcome
        out["outcome"] = {
            "solution": o.solution.value, "party_at_fault": o.party_at_fault, "root_cause": o.root_cause,
            "compensation": {"amount": str(o.compensation.amount), "currency": o.compensation.currency}
            if o.compensation else None, "template": o.template,
            "fields": {k: scrub(v) for k, v in o.fields.items()}, "approved_by": o.approved_by}
    if u.approval is not None:
        out["approval"] = u.approval.model_dump(mode="json")
    if u.contact is not None:
        out["contact"] = u.contact.model_dump(mode="json")
    if (judged := u.assessment) is not None:
        out["assessment"] = {"decision": judged.decision,
                             "reason": scrub(judged.reason) if judged.reason is not None else None,
                             "measure": scrub(judged.measure) if judged.measure is not None else None}
    return out


def _iso(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at is not None else None
