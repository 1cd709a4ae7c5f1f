"""The synthetic load of `complaints bench`: complaints in each channel's own format, and
inbound, registered and routed events of them. No I/O."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events import (
    Channel,
    Complaint,
    ComplaintRegistered,
    ComplaintRouted,
    Contact,
    InboundMessage,
    InboundReceived,
    Level,
    RoutingDecision,
    Severity,
)

CHANNELS = (Channel.web_form, Channel.phone, Channel.email, Channel.store)
SLA_LEAD, SLA_SPREAD = 10.0, 20.0  # seconds before the first deadline; over how long they fall
Record = tuple[str, bytes, bytes]  # (event id, key, value)

TEXTS = (
    "The kettle I bought last week is broken and stopped working after two days.",
    "Your delivery was late again and nobody answered the hotline.",
    "I was charged twice for the same order, please refund the extra fee.",
    "The staff at the counter were rude and ignored my questions.",
    "收到的商品有质量问题，屏幕有裂纹，希望尽快处理。",
)


def channel_payload(channel: str, i: int, message_id: str) -> dict[str, Any] | str:
    """Complaint ``i`` in the channel's own format (web_form, phone, email, store), own id."""
    text, subject, mail = TEXTS[i % len(TEXTS)], f"bench complaint {i}", f"bench-{i}@example.com"
    if channel == "phone":
        return {"call_id": message_id, "caller": f"+86 138 {i % 10**8:08d}", "desk": "bench",
                "notes": subject, "transcript": text}
    if channel == "store":
        return {"entry_id": message_id, "store_id": "bench-store", "email": mail,
                "description": text}
    if channel == "email":
        return (f"From: Bench <{mail}>\nTo: service@example.com\nSubject: {subject}\n"
                f"Message-ID: <{message_id}@bench.example>\nMIME-Version: 1.0\n"
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
                + base64.encodebytes(text.encode()).decode())
    if channel == "web_form":
        return {"form_id": message_id, "subject": subject, "description": text, "email": mail,
                "consent": True}
    raise ValueError(f"the bench has no payload for channel {channel!r}")


def web_form_bodies(run_id: str, count: int) -> list[bytes]:
    """N web form submissions (JSON bodies), each with its own form id, rotating texts."""
    return [json.dumps(channel_payload("web_form", i, f"bench-{run_id}-{i}"),
                       ensure_ascii=False).encode() for i in range(count)]



def inbound_records(run_id: str, count: int) -> list[Record]:
    """N inbound events of synthetic complaints, rotating channels (own formats) and texts."""
    out: list[Record] = []
    for i in range(count):
        message_id = f"bench-{run_id}-{i}"
        channel = CHANNELS[i % len(CHANNELS)]
        payload = channel_payload(channel.value, i, message_id)
        event = InboundReceived.new(
            InboundMessage(channel=channel, message_id=message_id, payload=payload),
            source="bench", time=datetime.now(UTC), subject=None)
        out.append((event.id, message_id.encode(), event.to_bytes()))
    return out


def registered_records(run_id: str, count: int, *, contact: bool = False) -> list[Record]:
    """N registered complaints for the router (or, with an e-mail contact, notifier) stage."""
    out: list[Record] = []
    now = datetime.now(UTC)
    for i in range(count):
        text = TEXTS[i % len(TEXTS)]
        cid = f"B{run_id}-{i:07d}"
        complaint = Complaint(
            complaint_id=cid, channel=CHANNELS[i % len(CHANNELS)], received_at=now,
            source_message_id=f"bench-{run_id}-{i}",
            customer=Contact(email=f"bench-{i}@example.com", language="en") if contact else Contact(),
            customer_key=f"bench-{run_id}-{i}", first_contact="bench-desk",
            subject=f"bench complaint {i}", description=text)
        event = ComplaintRegistered.new(complaint, source="bench", time=now, subject=cid)
        out.append((event.id, cid.encode(), event.to_bytes()))
    return out


def routed_records(run_id: str, count: int, now: datetime) -> list[Record]:
    """N routed complaints whose 1-hour deadlines fall due between now + lead and + spread."""
    out: list[Record] = []
    for i in range(count):
        cid = f"L{run_id}-{i:07d}"
        due = now + timedelta(seconds=SLA_LEAD + SLA_SPREAD * i / max(count - 1, 1))
        decision = RoutingDecision(
            complaint_id=cid, received_at=due - timedelta(hours=1), code="PQ-01",
            severity=Severity.general, department="quality", level=Level.L1,
            handler="quality-l1-01", first_contact_owner="bench-desk", reasons=["bench"])
        event = ComplaintRouted.new(decision, source="bench", time=now, subject=cid)
        out.append((event.id, cid.encode(), event.to_bytes()))
    return out

