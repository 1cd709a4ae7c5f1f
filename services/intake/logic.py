"""Intake rules: normalise a channel payload, number it, fold a case's timeline. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from schemas.events import Channel, Complaint, Contact, Nature
from services.common.errors import Rejected

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TEXT_FIELDS = ("description", "text", "transcript", "notes", "content", "body", "message")
_SUBJECT_FIELDS = ("subject", "title")
_FIRST_CONTACT_FIELDS = ("agent_id", "agent", "staff_id", "store_id", "desk")
_HTML_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t\r\f\v]+")
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
    """NFC-normalise, strip HTML tags and collapse whitespace."""
    text = unicodedata.normalize("NFC", _HTML_TAG.sub(" ", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def detect_language(text: str) -> str:
    """'zh' when the text has Chinese characters, else 'en'."""
    return "zh" if _CJK.search(text) else "en"


def customer_key(contact: Contact, *, account: str | None, secret: bytes) -> str:
    """Keyed hash (HMAC-SHA256) of the customer's strongest identifier."""
    ident = (contact.phone or contact.email or account or "").strip().lower()
    if not ident:
        return "anonymous"
    return hmac.new(secret, ident.encode(), hashlib.sha256).hexdigest()[:32]


def dedupe_key(channel: Channel, message_id: str | None, payload: Mapping[str, Any] | str) -> str:
    """Key of a channel message for de-duplication: its own id, else a content hash."""
    if message_id:
        return f"{channel.value}:id:{message_id}"
    body = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return f"{channel.value}:sha256:{hashlib.sha256(body.encode()).hexdigest()}"


def _first(payload: Mapping[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        value = payload.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def normalise(
    channel: Channel, payload: Mapping[str, Any] | str, *, complaint_id: str, message_id: str,
    received_at: datetime, desks: Mapping[Channel, str], identity_secret: bytes,
) -> Complaint:
    """Turn one channel payload into the canonical complaint, or raise Rejected."""
    fields: Mapping[str, Any] = {"text": payload} if isinstance(payload, str) else payload
    raw_text = _first(fields, _TEXT_FIELDS)
    if not raw_text:
        raise Rejected(f"payload: no complaint text in any of {', '.join(_TEXT_FIELDS)}")
    description = clean_text(raw_text)
    subject = clean_text(_first(fields, _SUBJECT_FIELDS) or description.split("\n", 1)[0])[:120]
    language: Literal["zh", "en"] | None = (
        "zh" if fields.get("language") == "zh" else "en" if fields.get("language") == "en" else None)
    contact = Contact(
        name=_first(fields, ("name", "customer_name")),
        phone=_first(fields, ("phone", "caller", "sender")),
        email=(_first(fields, ("email",)) or "").lower() or None,
        language=language or ("zh" if detect_language(description) == "zh" else "en"),
    )
    nature = fields.get("nature", Nature.complaint.value)
    if nature not in Nature.__members__:
        raise Rejected(f"payload.nature: must be one of {', '.join(Nature.__members__)}")
    return Complaint(
        complaint_id=complaint_id, channel=channel, nature=Nature(nature), received_at=received_at,
        source_message_id=message_id, customer=contact,
        customer_key=customer_key(contact, account=_first(fields, ("account", "user_id")),
                                  secret=identity_secret),
        first_contact=_first(fields, _FIRST_CONTACT_FIELDS) or desks.get(channel, "intake-desk"),
        subject=subject, description=description, demand=_first(fields, ("demand",)),
        product=_first(fields, ("product",)), order_id=_first(fields, ("order_id", "order")),
        store_id=_first(fields, ("store_id",)),
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
            state.update(severity=data["severity"], department=data["department"],
                         level=data["level"], owner=data["first_contact_owner"])
            if state["status"] == "registered":
                state["status"] = "routed"
        elif kind == "case.updated" and data["action"] not in ("note", "satisfaction"):
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
