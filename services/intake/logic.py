"""Intake rules: normalise a channel payload, number it, fold a case's timeline. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from schemas.events import ANONYMOUS_CUSTOMER, Channel, Complaint, Contact, Demand, Nature
from services.common.errors import Rejected
from services.common.policy import IntakePolicy
from services.intake.channels.base import ChannelMessage

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MAX_DESCRIPTION = 20_000
MAX_SUBJECT = 200
# Linear on hostile input: every attempt stops at the next "<" (an unclosed-tag flood
# must not cost quadratic time on the consumer's hot path).
_HTML_TAG = re.compile(r"<(script|style)\b[^<>]*>[^<]*</\1\s*>|<[^<>]*>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def complaint_number(now: datetime, random_bits: int) -> str:
    """A unique, time-sortable, phone-friendly number: YYMMDD-XXXXXXXXXX.

    Ten Crockford base-32 characters hold 27 bits of milliseconds since
    midnight UTC and 23 random bits, so instances need no coordination.
    """
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ms = int((now - midnight).total_seconds() * 1000)
    value = (ms << 23) | (random_bits & ((1 << 23) - 1))
    chars = "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(45, -1, -5))
    return f"{now:%y%m%d}-{chars}"


def clean_text(text: str) -> str:
    """NFC-normalise, strip HTML tags, unescape entities and collapse whitespace."""
    text = unicodedata.normalize("NFC", html.unescape(_HTML_TAG.sub(" ", text)))
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def detect_language(text: str) -> str:
    """'zh' when the text has Chinese characters, else 'en'."""
    return "zh" if _CJK.search(text) else "en"


def customer_key(contact: Contact, *, account: str | None, secret: bytes) -> str:
    """Keyed hash (HMAC-SHA256) of the customer's strongest identifier."""
    ident = (contact.phone or contact.email or account or "").strip().lower()
    if not ident:
        return ANONYMOUS_CUSTOMER
    return hmac.new(secret, ident.encode(), hashlib.sha256).hexdigest()[:32]


def dedupe_key(channel: Channel, message_id: str | None, payload: Mapping[str, Any] | str) -> str:
    """Key of a channel message for de-duplication: its own id, else a content hash."""
    if message_id:
        return f"{channel.value}:id:{message_id}"
    body = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return f"{channel.value}:sha256:{hashlib.sha256(body.encode()).hexdigest()}"


def normalise_phone(raw: str | None, *, region: str) -> str | None:
    """E.164 form of a phone number, or None when it is not a valid number."""
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalise_email(raw: str | None) -> str | None:
    """A validated, lower-cased e-mail address, or None."""
    if not raw:
        return None
    try:
        return str(validate_email(raw.strip(), check_deliverability=False).normalized).lower()
    except EmailNotValidError:
        return None


def utc_offset(moment: datetime) -> str:
    """The '+08:00' spelling of an aware datetime's offset."""
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _keyword_hit(words: list[str], text: str) -> bool:
    return any((re.search(rf"\b{re.escape(w)}\b", text) if w.isascii() else w in text)
               for w in (w.lower() for w in words))


def detect_demand(text: str, *, rules: IntakePolicy) -> Demand | None:
    """The customer's demand named in the text, first configured match wins."""
    lowered = text.lower()
    return next((d for d, words in rules.demand_keywords.items() if _keyword_hit(words, lowered)), None)


def detect_nature(text: str, *, rules: IntakePolicy) -> Nature:
    """Praise or suggestion when the text says so and no complaint word vetoes it."""
    lowered = text.lower()
    if _keyword_hit(rules.complaint_keywords, lowered):
        return Nature.complaint
    for nature in ("praise", "suggestion"):
        if _keyword_hit(rules.nature_keywords.get(nature, []), lowered):
            return Nature(nature)
    return Nature.complaint


def normalise(
    channel: Channel, msg: ChannelMessage, *, complaint_id: str, dedupe: str, received_at: datetime,
    rules: IntakePolicy, desks: Mapping[Channel, str], identity_secret: bytes,
) -> Complaint:
    """Turn one parsed channel message into the canonical complaint, or raise Rejected."""
    description = clean_text(msg.text)
    if not description:
        raise Rejected("payload: the complaint text is empty once cleaned")
    details = dict(msg.details)
    if len(description) > MAX_DESCRIPTION:
        description, details["truncated"] = description[:MAX_DESCRIPTION], True
    subject = clean_text(msg.subject or "") or description.split("\n", 1)[0]
    phone = normalise_phone(msg.phone, region=rules.default_region)
    email = normalise_email(msg.email)
    if msg.phone and not phone:
        details["phone_unusable"] = True
    if msg.email and not email:
        details["email_unusable"] = True
    language = msg.language or ("zh" if detect_language(description) == "zh" else "en")
    contact = Contact(name=clean_text(msg.name or "")[:200] or None, phone=phone, email=email,
                      language=language)
    occurred = msg.occurred_at
    return Complaint(
        complaint_id=complaint_id, channel=channel,
        nature=msg.nature or detect_nature(f"{subject}\n{description}", rules=rules),
        received_at=received_at, source_message_id=dedupe, customer=contact,
        customer_key=customer_key(contact, account=msg.account, secret=identity_secret),
        first_contact=msg.first_contact or desks.get(channel, "intake-desk"),
        subject=subject[:MAX_SUBJECT], description=description,
        demand=msg.demand or detect_demand(description, rules=rules), product=msg.product,
        order_id=msg.order_id, store_id=msg.store_id,
        occurred_at=occurred.astimezone(UTC) if occurred else None,
        occurred_utc_offset=utc_offset(occurred) if occurred else None,
        purchase_time=msg.purchase_time.astimezone(UTC) if msg.purchase_time else None,
        evidence=msg.evidence, details=details,
    )


def case_state(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold a complaint's timeline (envelopes as dicts) into its current state."""
    events = sorted(events, key=lambda e: (e["time"], e["id"]))
    state: dict[str, Any] = {"status": "unknown", "deadlines": {}, "notifications": []}
    for ev in events:
        data, kind = ev["data"], ev["type"]
        if kind == "complaint.registered":
            state.update(status="registered", complaint_id=data["complaint_id"],
                         channel=data["channel"], nature=data["nature"],
                         received_at=data["received_at"], first_contact=data["first_contact"],
                         subject=data["subject"])
        elif kind == "complaint.routed":
            revision = data.get("revision", 1)
            if revision >= state.get("revision", 0):  # a snapshot: the newest revision wins
                state.update(revision=revision, severity=data["severity"],
                             department=data["department"], level=data["level"],
                             owner=data["first_contact_owner"], handler=data.get("handler"),
                             code=data.get("code"), review=data.get("review", False))
            if state["status"] == "registered":
                state["status"] = "routed"
        elif kind == "case.updated" and data["action"] not in (
                "note", "satisfaction", "assigned", "transferred", "co_handler_added", "approved",
                "contacted"):  # work on the case, not a change of its status
            state["status"] = data["action"]
            if data.get("result"):
                state["result"] = data["result"]
        elif kind == "sla.alert":
            state["deadlines"][data["milestone"]] = {
                "deadline": data["deadline"], "outcome": data["outcome"], "on_time": data["on_time"]}
        elif kind == "notification.recorded":
            state["notifications"].append({"kind": data["kind"], "status": data["status"]})
    state["timeline"] = [
        {"time": e["time"], "type": e["type"], "source": e["source"], "id": e["id"],
         **({"action": e["data"]["action"]} if e["type"] == "case.updated" else {}),
         **({"milestone": e["data"]["milestone"], "outcome": e["data"]["outcome"]}
            if e["type"] == "sla.alert" else {})}
        for e in events
    ]
    return state
