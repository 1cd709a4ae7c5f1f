"""Intake rules: normalise a channel payload, number it, fold a case's timeline. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
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
# html.unescape turns "&#<digits>" into int(): 5000 digits raise ValueError (CPython's limit
# on int() of a string). A reference of more than 7 significant digits is past U+10FFFF, which
# html.unescape reads as U+FFFD anyway, so it is shortened before unescaping.
_CHARREF = re.compile(r"&#0*([0-9]+)")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # C0 controls but tab and line breaks, and DEL
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u3000]+")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def complaint_number(now: datetime, random_bits: int) -> str:
    """A unique, time-sortable, phone-friendly number: YYMMDD-XXXXXXXXXX.

    Ten Crockford base-32 characters hold 27 bits of milliseconds since
    midnight UTC and 23 bits drawn by ``ComplaintNumbers`` (random, then counting
    within the millisecond); intake reserves each number in Redis before use.
    """
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ms = int((now - midnight).total_seconds() * 1000)
    value = (ms << 23) | (random_bits & ((1 << 23) - 1))
    chars = "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(45, -1, -5))
    return f"{now:%y%m%d}-{chars}"


class ComplaintNumbers:
    """One instance's numbers: the first of a millisecond takes 23 random bits, the next ones
    of the same millisecond count on from it, so an instance never draws a number twice (up to
    8 million a millisecond) and two instances collide only when their runs of one millisecond
    overlap. Intake reserves every number in Redis before it is used and draws again on a
    collision (``redraw``): the rare overlap costs a retry, never a shared number.
    """

    _MASK = (1 << 23) - 1

    def __init__(self, random_bits: Callable[[], int]) -> None:
        self._random_bits = random_bits
        self._ms: tuple[int, int] | None = None  # (day ordinal, millisecond of the day) drawn in
        self._drawn: set[int] = set()  # the values drawn in it
        self._last = 0

    def _take(self, now: datetime, value: int) -> str:
        while value & self._MASK in self._drawn:
            value += 1
        self._last = value & self._MASK
        self._drawn.add(self._last)
        return complaint_number(now, self._last)

    def _moment(self, now: datetime) -> bool:
        """Start a new millisecond's run when ``now`` is in another; True if it is."""
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        ms = (now.toordinal(), int((now - midnight).total_seconds() * 1000))
        if ms == self._ms:
            return False
        self._ms, self._drawn = ms, set()
        return True

    def next(self, now: datetime) -> str:
        """The next number at ``now``."""
        return self._take(now, self._random_bits() if self._moment(now) else self._last + 1)

    def redraw(self, now: datetime) -> str:
        """Another number at ``now`` after a collision: a fresh random start (another instance
        is counting through the old one), never a number this instance drew before."""
        self._moment(now)
        return self._take(now, self._random_bits())


def clean_text(text: str) -> str:
    """NFC-normalise, strip HTML tags, unescape entities, drop control characters (NUL, ESC ...)
    and collapse whitespace."""
    text = _CHARREF.sub(_short_charref, _HTML_TAG.sub(" ", text))
    text = _CONTROLS.sub("", unicodedata.normalize("NFC", html.unescape(text)))
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _short_charref(m: re.Match[str]) -> str:
    digits = m.group(1)
    return f"&#{digits if len(digits) <= 7 else 1_114_112}"  # 1114112: past U+10FFFF, U+FFFD


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
    digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()  # lone surrogates too
    return f"{channel.value}:sha256:{digest}"


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
    """Whether a word occurs in ``text``: Latin ones as whole words. The substring test comes
    first, so the word-boundary search runs only where the word occurs (linear either way)."""
    return any(w in text and (not w.isascii() or re.search(rf"\b{re.escape(w)}\b", text) is not None)
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


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC; Rejected when that is outside the years 1-9999 (0001-01-01T00:00+14:00)."""
    try:
        return moment.astimezone(UTC) if moment else None
    except OverflowError:
        raise Rejected("payload: a time whose UTC is outside the years 1-9999") from None


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
    occurred, purchased = _utc(msg.occurred_at), _utc(msg.purchase_time)
    return Complaint(
        complaint_id=complaint_id, channel=channel,
        nature=msg.nature or detect_nature(f"{subject}\n{description}", rules=rules),
        received_at=received_at, source_message_id=dedupe, customer=contact,
        customer_key=customer_key(contact, account=msg.account, secret=identity_secret),
        first_contact=msg.first_contact or desks.get(channel, "intake-desk"),
        subject=subject[:MAX_SUBJECT], description=description,
        demand=msg.demand or detect_demand(description, rules=rules), product=msg.product,
        order_id=msg.order_id, store_id=msg.store_id,
        occurred_at=occurred, occurred_utc_offset=utc_offset(msg.occurred_at) if msg.occurred_at else None,
        purchase_time=purchased,
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
                "contacted", "suggestion_assessed"):  # work on the case, not a change of its status
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
