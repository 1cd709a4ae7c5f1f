"""Message bodies and their event types, one per kind of fact on a topic."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas.casework import (
    Approval,
    Assignment,
    ContactRecord,
    HandlingPlan,
    ResolutionOutcome,
    SuggestionAssessment,
)
from schemas.envelope import Envelope, Model

ANONYMOUS_CUSTOMER = "anonymous"
"""The ``customer_key`` of a complaint whose message names nobody (no phone, e-mail or account)."""

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


class SealedField(Model):
    """One personal-data field, sealed: AES-256-GCM under the customer's data key ``kid``
    (docs/privacy.md); the associated data binds it to the customer and the field name."""

    kid: str = Field(pattern=r"^[0-9a-f]{16}$", description="Id of the customer's data key that seals it.")
    ct: str = Field(max_length=4000, description="Base64url of the 12-byte nonce, the ciphertext and tag.")


class SealedContact(Model):
    """The sealed name, phone and e-mail of a contact, and whose data key seals them."""

    subject: str = Field(max_length=200, description="The customer key (anon-<complaint id> for a "
                         "named complaint without an identity) the data keys belong to.")
    name: SealedField | None = None
    phone: SealedField | None = None
    email: SealedField | None = None
    account: SealedField | None = Field(
        default=None, description="The sender's account on the channel it came by, sealed (field name "
        "'account'): the WeChat official account's openid, which the notifier's WeChat transport "
        "answers; absent on other channels and in events written before it existed.")


class Contact(Model):
    """Complainant identity and contact details (personal data: never logged).

    On the topics the name, phone and e-mail travel sealed (``sealed``) with the masked forms in
    clear; the clear fields are filled only in a process that opened them (the notifier sending,
    the desk showing a contact to a permitted reader) and in events written before sealing.
    """

    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    language: Literal["zh", "en"] = "zh"
    phone_masked: str | None = Field(default=None, max_length=40, description="e.g. +86*******8000")
    email_masked: str | None = Field(default=None, max_length=320, description="e.g. a***@example.com")
    sealed: SealedContact | None = Field(default=None, description="Name, phone and e-mail, sealed.")

    def masked(self) -> dict[str, str]:
        """The masked phone and e-mail (of a sealed contact, or masked now from a clear one), and
        ``wechat:***`` when a WeChat openid is sealed in it (never a character of the openid)."""
        from services.common.privacy import WECHAT_MASKED, mask

        wechat = self.sealed is not None and self.sealed.account is not None
        out = {"phone": self.phone_masked or (mask(self.phone) if self.phone else None),
               "email": self.email_masked or (mask(self.email) if self.email else None),
               "wechat": WECHAT_MASKED if wechat else None}
        return {k: v for k, v in out.items() if v}

    @property
    def named(self) -> bool:
        return bool(self.name or (self.sealed and self.sealed.name))

    @property
    def reachable_by(self) -> Literal["email", "sms", "none"]:
        """How the customer is written to: e-mail first, else SMS (clear or sealed)."""
        s = self.sealed
        if self.email or (s and s.email):
            return "email"
        if self.phone or (s and s.phone):
            return "sms"
        return "none"


class Complaint(Model):
    """The canonical, registered complaint."""

    complaint_id: str
    channel: Channel
    nature: Nature = Nature.complaint
    received_at: AwareDatetime
    source_message_id: str
    customer: Contact
    customer_key: str = Field(description="Keyed hash of the customer's identity; not PII; "
                              "ANONYMOUS_CUSTOMER when the message names nobody.")
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


class DecisionKind(StrEnum):
    """What a routing decision did to the case."""

    routed = "routed"              # first decision, on registration
    reclassified = "reclassified"  # a reviewer changed the code: new department and handler
    escalated = "escalated"        # one level up (SLA breach, dissatisfied customer, reopen)
    at_ceiling = "at_ceiling"      # an escalation trigger at L3: executives told, level kept
    assigned = "assigned"          # staff booked the case to a handler and/or department
    transferred = "transferred"    # staff moved the case to another handler and/or department
    co_handler_added = "co_handler_added"  # a co-handler of another department joined the case


class CoHandler(Model):
    """A co-handler of a cross-department case (a liaison per department)."""

    handler: str | None = None
    department: str | None = None


class RoutingDecision(Model):
    """The routing state of a complaint after one decision: a full snapshot, not a delta.

    Decisions of one complaint are numbered by ``revision`` (1, 2, ...): a consumer keeps
    the highest revision it has seen and ignores older ones, so the order of arrival does
    not matter.
    """

    complaint_id: str
    decision: DecisionKind = DecisionKind.routed
    revision: int = Field(default=1, ge=1, description="1 for the first decision, +1 for each next.")
    nature: Nature = Field(default=Nature.complaint,
                           description="Praise and suggestions are routed but start no deadlines.")
    received_at: AwareDatetime
    code: str = Field(default="OT-00", pattern=r"^[A-Z]{2}-\d{2}$", description="Taxonomy code.")
    code_name_zh: str | None = None
    code_name_en: str | None = None
    confidence: float = Field(default=1.0, ge=0, le=1, description="Of the classification.")
    matched_terms: list[str] = Field(default_factory=list,
                                     description="Taxonomy keywords that decided the code.")
    review: bool = Field(default=False,
                         description="Low confidence: queued for human review (人工复核).")
    severity: Severity
    department: str = Field(description="Handling department (of the code, or the review queue).")
    level: Level
    handler: str | None = Field(
        default=None, description="Booked handler from the roster; none when nobody is on duty.")
    first_contact_owner: str
    repeat_of: str | None = Field(
        default=None, description="The earlier complaint of the same customer within the window.")
    trigger: str | None = Field(
        default=None, description="What caused a later decision: sla_breach:<milestone>, "
                                  "dissatisfied, reopened, reclassified.")
    notify: list[str] = Field(default_factory=list,
                              description="Roles to tell now, e.g. executives for a major case.")
    co_handlers: list[CoHandler] = Field(
        default_factory=list, description="Co-handlers of other departments (co_handler_added).")
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
    reclassified = "reclassified"
    awaiting_customer = "awaiting_customer"  # the handler waits on the customer: clocks pause
    customer_replied = "customer_replied"    # the customer answered: paused clocks resume
    closed = "closed"
    assigned = "assigned"                    # booked to a handler and/or department
    transferred = "transferred"              # moved to another handler and/or department
    co_handler_added = "co_handler_added"    # a co-handler from another department
    resolution_proposed = "resolution_proposed"  # a resolution that awaits approval
    approved = "approved"                    # an approver approved a proposed resolution
    contacted = "contacted"                  # a contact record: call-back, visit, chat
    suggestion_assessed = "suggestion_assessed"  # a suggestion adopted or declined, with its reason


_ASSIGNING = frozenset({CaseAction.assigned, CaseAction.transferred, CaseAction.co_handler_added})
# action -> the field it needs; and each structured field -> the actions that may carry it
_REQUIRED = {CaseAction.resolved: "result", CaseAction.satisfaction: "score",
             CaseAction.reclassified: "code", CaseAction.resolution_proposed: "outcome",
             CaseAction.approved: "approval", CaseAction.contacted: "contact",
             CaseAction.suggestion_assessed: "assessment",
             **dict.fromkeys(_ASSIGNING, "assignment")}
_ALLOWED_ON = {"assignment": _ASSIGNING, "plan": frozenset({CaseAction.plan_decided}),
               "outcome": frozenset({CaseAction.resolution_proposed, CaseAction.resolved}),
               "approval": frozenset({CaseAction.approved}),
               "contact": frozenset({CaseAction.contacted}),
               "assessment": frozenset({CaseAction.suggestion_assessed})}


class CaseUpdate(Model):
    """A handler's or customer's step on a case."""

    complaint_id: str
    action: CaseAction
    actor: str = Field(min_length=1, max_length=200, description="Handler id or 'customer'.")
    note: str | None = Field(default=None, max_length=5_000)
    result: str | None = Field(default=None, max_length=5_000, description="Outcome, on resolved.")
    score: int | None = Field(default=None, ge=1, le=5, description="Satisfaction 1-5.")
    code: str | None = Field(default=None, pattern=r"^[A-Z]{2}-\d{2}$",
                             description="The reviewer's taxonomy code, on reclassified.")

    assignment: Assignment | None = Field(
        default=None, description="On assigned, transferred, co_handler_added.")
    plan: HandlingPlan | None = Field(default=None, description="On plan_decided (optional).")
    outcome: ResolutionOutcome | None = Field(
        default=None, description="On resolution_proposed; optional on resolved.")
    approval: Approval | None = Field(default=None, description="On approved.")
    contact: ContactRecord | None = Field(default=None, description="On contacted.")
    assessment: SuggestionAssessment | None = Field(
        default=None, description="On suggestion_assessed: adopted or declined, with the reason.")

    @model_validator(mode="after")
    def _action_fields(self) -> CaseUpdate:
        need = _REQUIRED.get(self.action)
        if need is not None and getattr(self, need) in (None, ""):
            raise ValueError(f"{self.action.value} events need the field {need}")
        for name, actions in _ALLOWED_ON.items():
            if getattr(self, name) is not None and self.action not in actions:
                raise ValueError(f"{name} belongs on {', '.join(sorted(actions))} events, "
                                 f"not on {self.action.value}")
        if self.action is CaseAction.resolution_proposed and self.outcome and self.outcome.approved_by:
            raise ValueError("approved_by is set on the resolved event after an approval, "
                             "not on the proposal")
        if self.approval is not None and self.approval.requester == self.actor:
            raise ValueError("four-eyes: the approver (actor) must not be the requester")
        return self


class CaseEvent(Envelope):
    EVENT_TYPE: ClassVar[str] = "case.updated"
    type: Literal["case.updated"] = "case.updated"
    data: CaseUpdate


# ---- complaints.sla ---------------------------------------------------------


class Milestone(StrEnum):
    """Watched time limits (REQUIREMENTS §7); each has a start, a stop and a target."""

    acknowledge = "acknowledge"  # receipt with the complaint number to the customer
    respond = "respond"          # a handler's initial response (urgent 30 min, major at once)
    dispatch = "dispatch"        # handed to the responsible department's handler
    plan = "plan"                # handling plan decided
    resolve = "resolve"          # resolution (working days)
    feedback = "feedback"        # result fed back to the customer after resolution
    revisit = "revisit"          # satisfaction revisit after resolution


class SlaOutcome(StrEnum):
    started = "started"
    warning = "warning"      # a share of the target (threshold) has elapsed
    paused = "paused"        # waiting on the customer: the clock stops counting
    resumed = "resumed"      # counting again; the deadline moved by the paused time
    met = "met"              # stopped, on time or late
    breached = "breached"    # the deadline passed while running
    cancelled = "cancelled"  # the case closed before the milestone was met


class SlaAlert(Model):
    """One state change of a milestone's clock, with who must act.

    Each (complaint, milestone, cycle, outcome[, threshold or fact]) is emitted once,
    under a deterministic event id. A reopened case starts a new cycle of its resolve
    clock (and, after the next resolution, of feedback and revisit).
    """

    complaint_id: str
    milestone: Milestone
    cycle: int = Field(default=1, ge=1, description="1, then +1 for each restart (reopen).")
    outcome: SlaOutcome
    threshold: float | None = Field(default=None, gt=0, lt=1,
                                    description="Warnings: the share of the target elapsed.")
    severity: Severity
    code: str | None = None
    clock: Literal["calendar", "business"] = "calendar"
    started_at: AwareDatetime
    deadline: AwareDatetime | None = Field(description="None while paused (it is not known yet).")
    due_at: AwareDatetime | None = Field(
        default=None, description="Warnings and breaches: the instant it became due (for lateness).")
    observed_at: AwareDatetime = Field(description="When the change happened or was seen.")
    on_time: bool | None = Field(description="Met by the deadline; none unless met or breached.")
    policy_version: str
    notify: list[str] = Field(description="Roles that must act, e.g. owner, department_head.")
    owner: str | None = Field(default=None, description="First-contact owner (staff id).")
    handler: str | None = Field(default=None, description="Booked handler (staff id).")
    department: str | None = None
    level: Level | None = None


class SlaEvent(Envelope):
    EVENT_TYPE: ClassVar[str] = "sla.alert"
    type: Literal["sla.alert"] = "sla.alert"
    data: SlaAlert


# ---- complaints.notifications ---------------------------------------------------------


class NotificationKind(StrEnum):
    # to the customer
    acknowledgement = "acknowledgement"  # registered, with the complaint number
    result = "result"                    # resolved, with the result
    revisit = "revisit"                  # satisfaction revisit after resolution
    reopened = "reopened"                # the case was reopened
    # inside
    assignment = "assignment"            # a case booked to a handler (and its owner told)
    escalation = "escalation"            # escalated, or an escalation trigger at the ceiling
    sla_warning = "sla_warning"          # a share of a deadline has passed
    sla_breach = "sla_breach"            # a deadline was missed


class NotificationRecord(Model):
    """One step of a notification: queued, deferred, sent, outboxed, retrying, failed,
    cancelled, in_doubt, rate_limited or callback_required.

    Every attempt and its result is recorded; ``sent``, ``outboxed``, ``failed``,
    ``cancelled``, ``rate_limited`` and ``callback_required`` are final. ``outboxed``: written to
    the file outbox (NOTIFIER_OUTBOX_ENABLED), so it reached nobody and is no notice to the SLA clocks.
    ``in_doubt``: the transport may or may not have it (its sender died mid-send, or no answer
    came after it was handed over), and the notifier was told not to resend such a
    notification (NOTIFIER_IN_DOUBT=hold); it is dead-lettered for a person to check.
    ``rate_limited``: not sent, its recipient had had as many customer messages as the
    notifier's per-recipient limit allows in the window.
    ``callback_required``: final, not sent: no transport can reach the customer (no contact, the
    channel's reply transport is not configured, or it refused this message for good, e.g. WeChat's
    48-hour window closed); the case's first-contact owner is told to reach the customer in person
    and record the contact (``contacted``), which meets the deadline a sent message would have.
    """

    notification_id: str
    complaint_id: str
    kind: NotificationKind
    transport: str
    role: str = Field(default="customer", description="customer, handler, department_head, ...")
    recipient: str = Field(description="Masked address or the role's channel, never a full address.")
    language: Literal["zh", "en"]
    status: Literal["queued", "deferred", "sent", "outboxed", "retrying", "failed", "cancelled", "in_doubt",
                    "rate_limited", "callback_required"]
    attempt: int = Field(default=0, ge=0, description="Delivery attempts so far.")
    due_at: AwareDatetime | None = Field(default=None, description="When it is (next) due to go.")
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
    original: str = Field(description="Base64 of the original bytes (their first bytes when truncated).")
    failed_at: datetime
    original_size: int | None = Field(default=None, ge=0, description="Size of the original in bytes.")
    original_sha256: str | None = Field(default=None, description="SHA-256 (hex) of the original bytes.")
    truncated: bool = Field(default=False, description="True when `original` holds only the first bytes: "
                            "the whole letter would exceed DEADLETTER_MAX_BYTES.")
    sealed: LetterSeal | None = Field(
        default=None, description="Set when `original` is sealed (nonce + AES-256-GCM ciphertext): the "
        "original may hold personal data; `complaints deadletter open` opens it with the master key.")


class LetterSeal(Model):
    """How a sealed dead letter's ``original`` opens: a data key of its own, wrapped by a master key."""

    alg: Literal["AES-256-GCM"] = "AES-256-GCM"
    kek: str = Field(description="Id of the master key (PII_MASTER_KEYS) that wraps the data key.")
    wrapped_key: str = Field(description="Base64url of the wrapped data key.")


class DeadLetterEvent(Envelope):
    EVENT_TYPE: ClassVar[str] = "deadletter.recorded"
    type: Literal["deadletter.recorded"] = "deadletter.recorded"
    data: DeadLetter


# ---- complaints.keys ---------------------------------------------------------


class WrappedKey(Model):
    """A customer's data key, wrapped by a master key (docs/privacy.md). The system of record of
    data keys: the compacted topic complaints.keys, keyed ``<subject>/<kid>``; a tombstone erases."""

    subject: str = Field(max_length=200, description="The customer key the data key belongs to.")
    kid: str = Field(pattern=r"^[0-9a-f]{16}$")
    kek: str = Field(description="Id of the master key that wraps it.")
    wrapped: str = Field(description="Base64url of nonce + the data key encrypted under the master key.")
    created_at: AwareDatetime
    aliases: list[str] = Field(default_factory=list, max_length=1000, description=(
        "Customer keys of the customer's other identifiers (the e-mail given beside the phone the "
        "subject is keyed on): `complaints erase-customer` finds the customer by any of them."))


class DataKeyRecorded(Envelope):
    EVENT_TYPE: ClassVar[str] = "datakey.recorded"
    type: Literal["datakey.recorded"] = "datakey.recorded"
    data: WrappedKey
