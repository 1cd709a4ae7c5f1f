"""What to tell whom: render notifications from templates, pick the transport. No I/O."""

from __future__ import annotations

from typing import Literal

from schemas.envelope import Model, derived_id
from schemas.events import Complaint, Contact, NotificationKind
from services.common.policy import NotifierPolicy


class Notification(Model):
    """One message to one recipient, ready for a transport."""

    notification_id: str
    complaint_id: str
    kind: NotificationKind
    transport: Literal["email", "sms", "none"]
    address: str
    language: Literal["zh", "en"]
    subject: str
    body: str


class CustomerRecord(Model):
    """What the notifier keeps of a complaint to write to its customer later."""

    complaint_id: str
    contact: Contact
    correlationid: str


def mask(address: str) -> str:
    """Hide most of an address: a***@example.com, +86*******8000."""
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    return address[:3] + "*" * max(len(address) - 7, 0) + address[-4:] if len(address) > 7 else "***"


def _route(contact: Contact) -> tuple[Literal["email", "sms", "none"], str]:
    if contact.email:
        return "email", contact.email
    if contact.phone:
        return "sms", contact.phone
    return "none", ""


def render(
    kind: NotificationKind, contact: Contact, *, complaint_id: str, templates: NotifierPolicy,
    result: str | None = None,
) -> Notification:
    """Render the customer's notification of ``kind`` in their language."""
    template = templates.templates[kind][contact.language]
    values = {"complaint_id": complaint_id, "result": result or ""}
    transport, address = _route(contact)
    return Notification(
        notification_id=derived_id("notification", complaint_id, kind.value),
        complaint_id=complaint_id, kind=kind, transport=transport, address=address,
        language=contact.language, subject=template.subject.format(**values),
        body=template.body.format(**values),
    )


def acknowledgement(complaint: Complaint, *, templates: NotifierPolicy) -> Notification:
    """The acknowledgement, with the complaint number, owed on registration."""
    return render(NotificationKind.acknowledgement, complaint.customer,
                  complaint_id=complaint.complaint_id, templates=templates)
