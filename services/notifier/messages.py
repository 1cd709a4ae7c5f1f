"""What a notification says and what is recorded of it: the model, templates, masking. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.envelope import Envelope, Model, derived_id
from schemas.events import (
    CaseUpdate,
    Complaint,
    Contact,
    Nature,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
    SealedField,
)
from services.common.errors import Rejected
from services.common.policy import NotifierPolicy
from services.common.privacy import mask
from services.common.resolution import ResultTemplate, render_result

SERVICE = "notifier"
CUSTOMER = "customer"


class SealedAddress(Model):
    """A customer's address as the queue keeps it: sealed, opened only when sent (docs/privacy.md)."""

    subject: str = Field(description="Whose data key seals it (the customer key).")
    field: Literal["email", "phone"]
    value: SealedField
    masked: str = Field(description="The masked address, for the records.")


class Notification(Model):
    """One message to one recipient, ready for a transport.

    A customer's notification of a sealed contact carries its address sealed (``sealed_address``)
    and ``address`` is then ``customer:<customer key>`` (no personal data: the recipient limit
    counts by it); the transport gets the opened address (``services.notifier.opening``).
    """

    notification_id: str
    complaint_id: str
    kind: NotificationKind
    transport: Literal["email", "sms", "chat", "none"]
    address: str = Field(description="E-mail, phone, or (chat) the role's channel.")
    language: Literal["zh", "en"]
    subject: str
    body: str
    role: str = CUSTOMER
    sealed_address: SealedAddress | None = None


class CustomerRecord(Model):
    """What the notifier keeps of a complaint to write to its customer later."""

    complaint_id: str
    contact: Contact
    correlationid: str


def _route(contact: Contact) -> tuple[Literal["email", "sms", "none"], str, SealedAddress | None]:
    """Transport and address: e-mail first, else SMS; a sealed contact's address stays sealed."""
    transport = contact.reachable_by
    field: Literal["email", "phone"] = "email" if transport == "email" else "phone"
    s = contact.sealed
    sealed = getattr(s, field) if s is not None else None
    if transport == "none":
        return "none", "", None
    if s is not None and sealed is not None:
        masked = (contact.email_masked if field == "email" else contact.phone_masked) or "***"
        return transport, f"{CUSTOMER}:{s.subject}", SealedAddress(
            subject=s.subject, field=field, value=sealed, masked=masked)
    return transport, str(getattr(contact, field) or ""), None


class _Blanks(dict[str, str]):
    """Template values; a placeholder the event does not fill renders as '-'."""

    def __missing__(self, key: str) -> str:
        return "-"


def render_text(kind: NotificationKind, language: Literal["zh", "en"], values: Mapping[str, object],
                *, templates: NotifierPolicy, nature: Nature = Nature.complaint) -> tuple[str, str]:
    """(subject, body) of a kind's template in a language, in the words for the message's nature."""
    template = templates.template(kind, language, nature=nature)
    filled = _Blanks({k: "-" if v is None or v == "" else str(v) for k, v in values.items()})
    return template.subject.format_map(filled), template.body.format_map(filled)


def render(
    kind: NotificationKind, contact: Contact, *, complaint_id: str, templates: NotifierPolicy,
    result: str | None = None, cause: str | None = None, values: Mapping[str, object] | None = None,
    nature: Nature = Nature.complaint,
) -> Notification:
    """Render the customer's notification of ``kind`` in their language.

    ``cause`` (the triggering event's id) tells apart notifications of one kind that a case
    may owe more than once (a second resolution's result); the acknowledgement has none.
    ``nature`` chooses the words (praise is thanked), never the id.
    """
    subject, body = render_text(kind, contact.language,
                                {**(values or {}), "complaint_id": complaint_id, "result": result},
                                templates=templates, nature=nature)
    transport, address, sealed = _route(contact)
    return Notification(
        notification_id=derived_id("notification", complaint_id, kind.value, *([cause] if cause else [])),
        complaint_id=complaint_id, kind=kind, transport=transport, address=address,
        language=contact.language, subject=subject, body=body, sealed_address=sealed,
    )


SAMPLE = {
    "complaint_id": "261123-G8DDZ53RCF", "result": "已为您更换新机并退还维修费 / replaced and refunded",
    "handler": "quality-l1-01", "owner": "store-sh-01", "department": "quality", "level": "L2",
    "code": "PQ-01", "code_name": "Defective or broken product", "milestone": "resolve",
    "deadline": "2026-11-26T18:00:00+08:00", "reason": "resolve deadline breached", "score": 2,
}
"""Sample values for `complaints notify preview`."""


def result_text(update: CaseUpdate, language: Literal["zh", "en"], *,
                results: Mapping[str, ResultTemplate]) -> str | None:
    """What a resolution tells the customer: its outcome's policy template filled, else its result.

    Raises ``Rejected`` naming the problem for an unknown template or a missing or unknown
    field: the customer never gets a half-filled text, nor the handler's words instead.
    """
    if update.outcome is None or update.outcome.template is None:
        return update.result
    try:
        return render_result(update.outcome, language, templates=results)
    except ValueError as exc:
        raise Rejected(f"data.outcome: {exc}") from None


def acknowledgement(complaint: Complaint, *, templates: NotifierPolicy) -> Notification:
    """The answer owed on registration, with the number, in the words for its nature."""
    return render(NotificationKind.acknowledgement, complaint.customer,
                  complaint_id=complaint.complaint_id, templates=templates, nature=complaint.nature)


def internal(kind: NotificationKind, roles: list[str], values: Mapping[str, object], *, complaint_id: str,
             cause: str, language: Literal["zh", "en"], templates: NotifierPolicy) -> list[Notification]:
    """One notice per role, to the role's chat channel, naming staff by id (never customers)."""
    subject, body = render_text(kind, language, {**values, "complaint_id": complaint_id},
                                templates=templates)
    return [Notification(
        notification_id=derived_id("notification", complaint_id, kind.value, cause, role),
        complaint_id=complaint_id, kind=kind, transport="chat", address=role, language=language,
        subject=subject, body=body, role=role) for role in dict.fromkeys(roles)]


Status = Literal["queued", "deferred", "sent", "outboxed", "retrying", "failed", "cancelled", "in_doubt",
                 "rate_limited"]


def record(notification_id: str, complaint_id: str, kind: NotificationKind, queue: str, status: Status,
           *, now: datetime, cause: Envelope | None, note: Notification | None = None, attempt: int = 0,
           due_at: datetime | None = None, detail: str | None = None,
           meta: Mapping[str, str] | None = None) -> NotificationEvent:
    """The record of one step of a notification (a customer's address masked)."""
    recipient = "-"
    if note and note.sealed_address is not None:
        recipient = note.sealed_address.masked
    elif note and note.address:
        recipient = mask(note.address) if note.role == CUSTOMER else note.address
    data = NotificationRecord(
        notification_id=notification_id, complaint_id=complaint_id, kind=kind,
        transport=f"{queue}:{note.transport}" if note else queue, role=note.role if note else CUSTOMER,
        recipient=recipient, language=note.language if note else "zh", status=status,
        attempt=attempt, due_at=due_at, detail=detail)
    # caused by an input event, or (dispatching) by the one the queue entry remembers
    return NotificationEvent.new(
        data, id=derived_id("notification-record", notification_id, status, str(attempt)),
        source=SERVICE, time=now, subject=complaint_id, cause=cause,
        correlationid=(meta or {}).get("correlationid"), causationid=(meta or {}).get("causationid"))
