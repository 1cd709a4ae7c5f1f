"""What a notification says and what is recorded of it: the model, templates, masking. No I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import Field

from schemas.envelope import Envelope, Model, derived_id
from schemas.events import (
    CaseUpdate,
    Channel,
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
OWNER = "first_contact_owner"  # the role a call-back task goes to (its chat channel)
TransportName = Literal["email", "sms", "wechat", "platform", "chat", "none"]


class SealedAddress(Model):
    """A customer's address as the queue keeps it: sealed, opened only when sent (docs/privacy.md)."""

    subject: str = Field(description="Whose data key seals it (the customer key).")
    field: Literal["email", "phone", "account"]
    value: SealedField
    masked: str = Field(description="The masked address, for the records.")


class Notification(Model):
    """One message to one recipient, ready for a transport.

    A customer's notification of a sealed contact carries its address sealed (``sealed_address``)
    and ``address`` is then ``customer:<customer key>`` (no personal data: the recipient limit
    counts by it); the transport gets the opened address (``services.notifier.opening``). A reply
    on the customer's channel: ``wechat`` (the address is the sealed openid) or ``platform``
    (``<platform>:<post id>``, the public post or review answered).
    """

    notification_id: str
    complaint_id: str
    kind: NotificationKind
    transport: TransportName
    address: str = Field(description="E-mail, phone, <platform>:<post id>, or (chat) the role's channel.")
    language: Literal["zh", "en"]
    subject: str
    body: str
    role: str = CUSTOMER
    sealed_address: SealedAddress | None = None


class ReplyRoute(Model):
    """How a customer without e-mail or phone is answered on the channel they came by.

    ``wechat``: a customer-service message to the sender's openid (sealed in the contact);
    ``platform``: a reply to the post or review (``post_id``) on ``platform`` (weibo, dianping ...).
    """

    channel: Literal["wechat", "platform"]
    platform: str | None = Field(default=None, max_length=100)
    post_id: str | None = Field(default=None, max_length=200)


class CustomerRecord(Model):
    """What the notifier keeps of a complaint to write to its customer later."""

    complaint_id: str
    contact: Contact
    correlationid: str
    reply: ReplyRoute | None = Field(default=None, description="The channel's reply route, if any.")


_PLATFORM_CHANNELS = {Channel.social, Channel.review_platform}
PLATFORM_NAME = r"^[a-z0-9][a-z0-9_.-]{0,49}$"  # a platform as NOTIFIER_PLATFORMS names it


def reply_route(complaint: Complaint) -> ReplyRoute | None:
    """The reply route of a complaint's channel: WeChat with the sender's sealed openid, a social
    post or a review with its platform and post id (intake's ``<channel>:id:<platform>:<post id>``)."""
    if complaint.channel is Channel.wechat:
        sealed = complaint.customer.sealed
        return ReplyRoute(channel="wechat") if sealed is not None and sealed.account is not None else None
    platform = complaint.details.get("platform")
    if complaint.channel not in _PLATFORM_CHANNELS or not isinstance(platform, str):
        return None
    name = platform.strip().lower()
    if not re.fullmatch(PLATFORM_NAME, name):  # no platform, or one no setting could name
        return None
    prefix = f"{complaint.channel.value}:id:{platform}:"
    post_id = complaint.source_message_id.removeprefix(prefix)
    if post_id == complaint.source_message_id or not post_id:  # no post id: de-duplicated by content
        return None
    return ReplyRoute(channel="platform", platform=name, post_id=post_id)


def _route(contact: Contact,
           reply: ReplyRoute | None = None) -> tuple[TransportName, str, SealedAddress | None]:
    """Transport and address: e-mail first, else SMS, else the channel's reply route; a sealed
    contact's address stays sealed."""
    transport = contact.reachable_by
    field: Literal["email", "phone"] = "email" if transport == "email" else "phone"
    s = contact.sealed
    sealed = getattr(s, field) if s is not None else None
    if transport == "none":
        if reply is not None and reply.channel == "platform":
            return "platform", f"{reply.platform}:{reply.post_id}", None
        if reply is not None and reply.channel == "wechat" and s is not None and s.account is not None:
            return "wechat", f"{CUSTOMER}:{s.subject}", SealedAddress(
                subject=s.subject, field="account", value=s.account, masked="wechat:***")
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
    nature: Nature = Nature.complaint, reply: ReplyRoute | None = None,
) -> Notification:
    """Render the customer's notification of ``kind`` in their language.

    ``cause`` (the triggering event's id) tells apart notifications of one kind that a case
    may owe more than once (a second resolution's result); the acknowledgement has none.
    ``nature`` chooses the words (praise is thanked), never the id. ``reply`` is the channel's
    reply route, for a customer with neither e-mail nor phone.
    """
    subject, body = render_text(kind, contact.language,
                                {**(values or {}), "complaint_id": complaint_id, "result": result},
                                templates=templates, nature=nature)
    transport, address, sealed = _route(contact, reply)
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
                  complaint_id=complaint.complaint_id, templates=templates, nature=complaint.nature,
                  reply=reply_route(complaint))


def internal(kind: NotificationKind, roles: list[str], values: Mapping[str, object], *, complaint_id: str,
             cause: str, language: Literal["zh", "en"], templates: NotifierPolicy) -> list[Notification]:
    """One notice per role, to the role's chat channel, naming staff by id (never customers)."""
    subject, body = render_text(kind, language, {**values, "complaint_id": complaint_id},
                                templates=templates)
    return [Notification(
        notification_id=derived_id("notification", complaint_id, kind.value, cause, role),
        complaint_id=complaint_id, kind=kind, transport="chat", address=role, language=language,
        subject=subject, body=body, role=role) for role in dict.fromkeys(roles)]


# ---- call-back tasks: a customer no transport reaches, told to the first-contact owner -----------

CallbackWhy = Literal["no_contact", "not_configured", "refused", "undeliverable"]
_OWED = {  # what the customer was owed, and what the desk records once they are reached
    NotificationKind.acknowledgement: (("受理回执", "「初步响应」"), ("acknowledgement", "'Acknowledge'")),
    NotificationKind.result: (("处理结果告知", "联系记录（目的：结果反馈）"),
                              ("result", "a contact record (purpose: feedback)")),
    NotificationKind.revisit: (("满意度回访", "联系记录（目的：满意度回访，附评分）"),
                               ("satisfaction revisit",
                                "a contact record (purpose: revisit, with the score)")),
    NotificationKind.reopened: (("重新受理告知", "联系记录"), ("reopen notice", "a contact record")),
}
_WHY = {
    "no_contact": ("客户未留电话或邮箱，来源渠道也无法回复", "the customer left no phone or e-mail and "
                   "their channel cannot be answered"),
    "not_configured": ("来源渠道的回复未配置", "replies on their channel are not configured"),
    "refused": ("来源渠道拒收了这条消息（如微信 48 小时客服窗口已过）", "their channel refused the message "
                "(e.g. WeChat's 48-hour customer-service window has closed)"),
    "undeliverable": ("来源渠道多次发送均未成功", "their channel could not be reached after every attempt"),
}


def callback_task(note: Notification, *, why: CallbackWhy, language: Literal["zh", "en"]) -> Notification:
    """The call-back task a customer message no transport can deliver raises: a notice to the
    first-contact owner's channel (id derived from the message's), to reach the customer in person
    and record it at the desk. Its kind is ``sla_warning`` (a deadline is at risk; its record is no
    notice to the customer, so it stops no clock)."""
    (zh_owed, zh_record), (en_owed, en_record) = _OWED.get(
        note.kind, ((note.kind.value, "联系记录"), (note.kind.value, "a contact record")))
    cid = note.complaint_id
    if language == "zh":
        subject = f"投诉 {cid}：请联系客户（{zh_owed}未能送达）"
        body = (f"投诉 {cid} 的{zh_owed}无法送达客户：{_WHY[why][0]}。请通过电话、上门或该渠道的后台"
                f"联系客户，并在工作台登记{zh_record}，以免时限超期。")
    else:
        subject = f"Complaint {cid}: please contact the customer ({en_owed} not delivered)"
        body = (f"The {en_owed} of complaint {cid} cannot reach the customer: {_WHY[why][1]}. Reach them "
                f"by phone, in person or on their channel's console, and record {en_record} at the desk, "
                "so the deadline is met.")
    return Notification(
        notification_id=derived_id("notification", cid, "callback", note.notification_id),
        complaint_id=cid, kind=NotificationKind.sla_warning, transport="chat", address=OWNER,
        language=language, subject=subject, body=body, role=OWNER)


Status = Literal["queued", "deferred", "sent", "outboxed", "retrying", "failed", "cancelled", "in_doubt",
                 "rate_limited", "callback_required"]


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
