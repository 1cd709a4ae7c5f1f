"""The US CFPB Consumer Complaint Database export as channel payloads (pure mapping).

The public export (CSV, public domain) has 18 columns in two header spellings: snake_case
(``date_received``, ``submitted_via``, ``zipcode`` or ``zip_code`` ...) and the official
Title Case (``Date received``, ``Submitted via``, ``Consumer disputed?`` ...); both are
folded to snake_case. Dates come as ISO (2017-03-21), MM/DD/YYYY or M/D/YYYY; flags as
true/false, Yes/No, or empty.

Each row becomes one payload in its channel's documented format
(``services.intake.channels``), chosen by "Submitted via":

    Web -> web_form          Phone -> phone (text in ``notes``, no caller)
    Email -> email (a raw RFC 5322 message)    Referral -> partner (reporter cfpb-referral)
    Postal mail -> letter (medium postal)      Fax -> letter (medium fax)
    anything else: web_form when it names a web channel ("Web Referral", "Servicemember
    Portal", "Online ..."), else partner (empty or unknown: CFPB passed it on).

Text is the consumer's narrative when there is one, else a sentence built from product,
sub-product, issue and sub-issue; the subject is the issue; the time is midnight
(America/New_York) of the date received. Message ids are ``cfpb:<complaint id>``, also
used as the form id, call id or reference, so intake de-duplicates a replayed row.
The CFPB's own verdicts (timely response, consumer disputed) are not channel input: they
are kept apart by ``cfpb_truth`` for measuring classification and routing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from schemas.events import Channel

EASTERN = ZoneInfo("America/New_York")
REPORTER = "cfpb-referral"
HEADER_ALIASES = {"zipcode": "zip_code"}
_VIA = {
    "web": (Channel.web_form, None), "phone": (Channel.phone, None),
    "email": (Channel.email, None), "referral": (Channel.partner, None),
    "postal mail": (Channel.letter, "postal"), "fax": (Channel.letter, "fax"),
}
_WEB_LIKE = re.compile(r"\b(web|online|portal|internet|app)\b", re.IGNORECASE)
_DATE = re.compile(r"^(?:(\d{4})-(\d{2})-(\d{2})|(\d{1,2})/(\d{1,2})/(\d{4}))$")
_TRUE, _FALSE = {"true", "yes", "y", "1"}, {"false", "no", "n", "0"}

Payload = dict[str, Any] | str


class CfpbTruth(TypedDict):
    """What the CFPB recorded about a complaint, to measure the pipeline against."""

    product: str
    sub_product: str | None
    issue: str
    sub_issue: str | None
    submitted_via: str
    received: date
    sent_to_company: date | None
    company_response: str | None
    timely: bool | None
    disputed: bool | None


def header(name: str) -> str:
    """A column name in either spelling, as snake_case ("Consumer disputed?" -> consumer_disputed)."""
    key = re.sub(r"[^a-z0-9]+", "_", name.strip().lstrip("\ufeff").lower()).strip("_")
    return HEADER_ALIASES.get(key, key)


def parse_date(text: str) -> date:
    """2017-03-21, 09/12/2016 or 8/30/2013 as a date; ValueError otherwise."""
    m = _DATE.match(text.strip())
    if not m:
        raise ValueError(f"not a date: {text!r}")
    if m.group(1):
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return date(int(m.group(6)), int(m.group(4)), int(m.group(5)))


def received_at(day: date) -> datetime:
    """Midnight of ``day`` in New York (the CFPB's own time zone), timezone-aware."""
    return datetime(day.year, day.month, day.day, tzinfo=EASTERN)


def parse_flag(text: str) -> bool | None:
    """true/false, Yes/No (any case) as a bool; empty, N/A or anything else as None."""
    value = text.strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def channel_of(submitted_via: str) -> tuple[Channel, str | None]:
    """The intake channel of a "Submitted via" value, and the letter medium when a letter."""
    via = " ".join(submitted_via.split()).lower()
    if via in _VIA:
        return _VIA[via]
    return (Channel.web_form, None) if _WEB_LIKE.search(via) else (Channel.partner, None)


def complaint_text(row: Mapping[str, str]) -> str:
    """The narrative, else "Product / sub-product: issue (sub-issue)"."""
    narrative = row.get("consumer_complaint_narrative", "").strip()
    if narrative:
        return narrative
    what = " / ".join(p for p in (row.get("product", "").strip(), row.get("sub_product", "").strip()) if p)
    issue, sub = row.get("issue", "").strip(), row.get("sub_issue", "").strip()
    text = ": ".join(p for p in (what, issue) if p) + (f" ({sub})" if sub else "")
    return text or "Consumer complaint (no details given)"


def email_message(complaint_id: str, *, subject: str, text: str, when: datetime) -> str:
    """A raw RFC 5322 message from a placeholder address (the export has no e-mail address)."""
    msg = EmailMessage()
    msg["From"] = f"CFPB consumer <consumer-{complaint_id}@cfpb.example>"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<cfpb-{complaint_id}@cfpb.example>"
    msg.set_content(text)
    return msg.as_string()


def cfpb_row(row: Mapping[str, str]) -> tuple[Channel, str, Payload]:
    """One export row (snake_case keys) as (channel, message id, payload); ValueError if unusable."""
    complaint_id = row.get("complaint_id", "").strip()
    if not complaint_id:
        raise ValueError("no complaint id")
    when = received_at(parse_date(row.get("date_received", "")))
    message_id, text = f"cfpb:{complaint_id}", complaint_text(row)
    subject = row.get("issue", "").strip() or None
    product = row.get("product", "").strip() or None
    channel, medium = channel_of(row.get("submitted_via", ""))
    stamp = when.isoformat()
    payload: dict[str, Any]
    if channel is Channel.email:
        return channel, message_id, email_message(
            complaint_id, subject=subject or "Complaint", text=text, when=when)
    if channel is Channel.phone:
        payload = {"call_id": message_id, "notes": text, "started_at": stamp, "language": "en"}
    elif channel is Channel.letter:
        payload = {"reference": message_id, "medium": medium, "subject": subject, "text": text,
                   "received_at": stamp}
    elif channel is Channel.partner:
        payload = {"reference": message_id, "reporter": REPORTER, "subject": subject,
                   "description": text, "reported_at": stamp, "language": "en"}
    else:
        payload = {"form_id": message_id, "subject": subject, "description": text,
                   "submitted_at": stamp, "language": "en"}
    payload["product"] = product
    return channel, message_id, {k: v for k, v in payload.items() if v is not None}


def truth_of(row: Mapping[str, str]) -> CfpbTruth:
    """The CFPB's own facts and verdicts of one row."""
    def opt(name: str) -> str | None:
        return row.get(name, "").strip() or None

    sent = opt("date_sent_to_company")
    return CfpbTruth(
        product=row.get("product", "").strip(), sub_product=opt("sub_product"),
        issue=row.get("issue", "").strip(), sub_issue=opt("sub_issue"),
        submitted_via=row.get("submitted_via", "").strip(),
        received=parse_date(row.get("date_received", "")),
        sent_to_company=parse_date(sent) if sent else None,
        company_response=opt("company_response_to_consumer"),
        timely=parse_flag(row.get("timely_response", "")),
        disputed=parse_flag(row.get("consumer_disputed", "")),
    )


def read_records(path: Path | str, *, fold: Callable[[str], str] = header
                 ) -> Iterator[tuple[int, dict[str, str]]]:
    """(first line number, row) of every non-blank record of a CSV with a header row.

    Column names pass through ``fold`` (by default: to the export's snake_case).
    """
    with Path(path).open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        names = [fold(h) for h in next(reader, [])]
        while True:
            line = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            if any(v.strip() for v in values):
                yield line, {n: v for n, v in zip(names, values, strict=False)}


def cfpb_rows(path: Path | str) -> Iterator[tuple[Channel, str, Payload]]:
    """Every row of an export as (channel, message id, payload); ValueError on an unusable row."""
    for line, row in read_records(path):
        try:
            yield cfpb_row(row)
        except ValueError as exc:
            raise ValueError(f"{Path(path).name}:{line}: {exc}") from None


def cfpb_truth(path: Path | str) -> dict[str, CfpbTruth]:
    """The CFPB's facts per message id (``cfpb:<complaint id>``), rows without an id left out."""
    out: dict[str, CfpbTruth] = {}
    for line, row in read_records(path):
        if complaint_id := row.get("complaint_id", "").strip():
            try:
                out[f"cfpb:{complaint_id}"] = truth_of(row)
            except ValueError as exc:
                raise ValueError(f"{Path(path).name}:{line}: {exc}") from None
    return out
