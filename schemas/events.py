"""Message bodies and their event types, one per kind of fact on a topic."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas.envelope import Envelope, Model


class Channel(StrEnum):
    phone = "phone"
    web_form = "web_form"
    email = "email"
    wechat = "wechat"
    social = "social"
    app = "app"
    store = "store"
    sms = "sms"
    review_platform = "review_platform"
    survey_reply = "survey_reply"
    partner = "partner"
    letter = "letter"


class Nature(StrEnum):
    complaint = "complaint"
    suggestion = "suggestion"
    praise = "praise"


class Severity(StrEnum):
    general = "general"
    urgent = "urgent"
    major = "major"


class Level(StrEnum):
    """Response tiers: specialist, department head, executive supervision."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"


# ---- complaints.inbound ---------------------------------------------------------


class InboundMessage(Model):
    channel: Channel
    message_id: str | None = Field(
        default=None, max_length=200, description="The channel's own id, for de-duplication."
    )
    payload: dict[str, Any] | str = Field(description="The channel's payload, as received.")


class InboundReceived(Envelope):
    EVENT_TYPE: ClassVar[str] = "inbound.received"
    type: Literal["inbound.received"] = "inbound.received"
    data: InboundMessage


# ---- complaints.registered ---------------------------------------------------------


class Demand(StrEnum):
    """What the customer asks for (诉求)."""

    refund = "refund"
    replacement = "replacement"
    repair = "repair"
    apology = "apology"
    compensation = "compensation"
    explanation = "explanation"


class Evidence(Model):
    """A reference to an attachment, screenshot or recording; never the bytes themselves."""

    name: str = Field(max_length=300)
    media_type: str | None = Field(default=None, max_length=200)
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    url: str | None = Field(default=None, max_length=2000)


class Contact(Model):
    """Complainant identity and contact details (personal data: never logged)."""

    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    language: Literal["zh", "en"] = "zh"


class Complaint(Model):
    """The canonical, registered complaint."""

    complaint_id: str
    channel: Channel
    nature: Nature = Nature.complaint
    received_at: AwareDatetime
    source_message_id: str
    customer: Contact
    customer_key: str = Field(description="Keyed hash of the customer's identity; not PII.")
    first_contact: str = Field(description="Agent, desk or store that received it first.")
    subject: str = Field(max_length=500)
    description: str = Field(max_length=20_000)
    demand: Demand | None = None
    product: str | None = None
    order_id: str | None = None
    store_id: str | None = None
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When the channel says it happened, in UTC.")
    occurred_utc_offset: str | None = Field(
        default=None, pattern=r"^[+-]\d{2}:\d{2}$", description="The original offset, e.g. +08:00.")
    purchase_time: AwareDatetime | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    details: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Channel specifics: audience, rating, url, app version ...")


class ComplaintRegistered(Envelope):
    EVENT_TYPE: ClassVar[str] = "complaint.registered"
    type: Literal["complaint.registered"] = "complaint.registered"
    data: Complaint


# ---- complaints.routed ---------------------------------------------------------


class RoutingDecision(Model):
    complaint_id: str
    nature: Nature = Field(default=Nature.complaint,
                           description="Praise and suggestions are routed but start no deadlines.")
    received_at: AwareDatetime
    severity: Severity
    department: str
    level: Level
    first_contact_owner: str
    repeat_of: str | None = Field(
        default=None, description="The earlier complaint of the same customer within the window.")
    reasons: list[str]


class ComplaintRouted(Envelope):
    EVENT_TYPE: ClassVar[str] = "complaint.routed"
    type: Literal["complaint.routed"] = "complaint.routed"
    data: RoutingDecision


# ---- complaints.lifecycle ---------------------------------------------------------


class CaseAction(StrEnum):
    acknowledged = "acknowledged"
    note = "note"
    plan_decided = "plan_decided"
    resolved = "resolved"
    satisfaction = "satisfaction"
    reopened = "reopened"
    closed = "closed"


class CaseUpdate(Model):
    """A handler's or customer's step on a case."""

    complaint_id: str
    action: CaseAction
    actor: str = Field(min_length=1, max_length=200, description="Handler id or 'customer'.")
    note: str | None = Field(default=None, max_length=5_000)
    result: str | None = Field(default=None, max_length=5_000, description="Outcome, on resolved.")
    score: int | None = Field(default=None, ge=1, le=5, description="Satisfaction 1-5.")

    @model_validator(mode="after")
    def _action_fields(self) -> CaseUpdate:
        if self.action is CaseAction.resolved and not self.result:
            raise ValueError("a resolved event needs a result")
        if self.action is CaseAction.satisfaction and self.score is None:
            raise ValueError("a satisfaction event needs a score")
        return self


class CaseEvent(Envelope):
    EVENT_TYPE: ClassVar[str] = "case.updated"
    type: Literal["case.updated"] = "case.updated"
    data: CaseUpdate


# ---- complaints.sla ---------------------------------------------------------


class Milestone(StrEnum):
    acknowledge = "acknowledge"
    resolve = "resolve"


class SlaOutcome(StrEnum):
    started = "started"
    met = "met"
    breached = "breached"


class SlaAlert(Model):
    """A deadline's clock started, was met (on time or late), or was breached."""

    complaint_id: str
    milestone: Milestone
    outcome: SlaOutcome
    severity: Severity
    started_at: AwareDatetime
    deadline: AwareDatetime
    observed_at: AwareDatetime = Field(description="When it started, was met, or was seen breached.")
    on_time: bool | None = Field(description="Met by the deadline; none while started.")
    policy_version: str
    notify: list[str] = Field(description="Roles that must act, e.g. owner, department_head.")


class SlaEvent(Envelope):
    EVENT_TYPE: ClassVar[str] = "sla.alert"
    type: Literal["sla.alert"] = "sla.alert"
    data: SlaAlert


# ---- complaints.notifications ---------------------------------------------------------


class NotificationKind(StrEnum):
    acknowledgement = "acknowledgement"
    result = "result"


class NotificationRecord(Model):
    """What was sent, to whom (a role and a masked address), how."""

    notification_id: str
    complaint_id: str
    kind: NotificationKind
    transport: str
    recipient: str = Field(description="Masked address, never the full one.")
    language: Literal["zh", "en"]
    status: Literal["sent", "failed"]
    detail: str | None = None


class NotificationEvent(Envelope):
    EVENT_TYPE: ClassVar[str] = "notification.recorded"
    type: Literal["notification.recorded"] = "notification.recorded"
    data: NotificationRecord


# ---- complaints.deadletter ---------------------------------------------------------


class DeadLetter(Model):
    """Rejected input: the original bytes, where they came from, and why."""

    service: str
    source: str = Field(description="topic:partition:offset, or http:<path>.")
    reason: str
    error_type: str
    original_key: str | None = Field(default=None, description="Base64 of the record key.")
    original: str = Field(description="Base64 of the original bytes.")
    failed_at: datetime


class DeadLetterEvent(Envelope):
    EVENT_TYPE: ClassVar[str] = "deadletter.recorded"
    type: Literal["deadletter.recorded"] = "deadletter.recorded"
    data: DeadLetter
