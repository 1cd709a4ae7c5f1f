"""Every channel's example, over HTTP and over Kafka, through the real broker: same complaint."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from schemas.events import Channel, InboundMessage, InboundReceived
from services.intake.signing import CONTENT_TYPES
from tests.harness import Service, TopicReader, post_inbound

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parent.parent / "examples"
FILES = sorted(p for p in EXAMPLES.glob("*/*") if p.parent.name != "survey_reply"
               and p.suffix in CONTENT_TYPES)
SAME = ("channel", "nature", "subject", "description", "customer", "customer_key", "first_contact",
        "demand", "product", "order_id", "store_id", "occurred_at", "occurred_utc_offset",
        "purchase_time", "evidence", "details")


@pytest.fixture(scope="module")
def reader(broker: str, stack: dict[str, Service]) -> Iterator[TopicReader]:
    r = TopicReader(broker, "complaints.registered", "complaints.lifecycle", "complaints.deadletter")
    yield r
    r.close()


def _variant(path: Path, tag: str) -> bytes:
    """The example with its own message id changed, so it is a new message, not a duplicate."""
    raw = path.read_bytes()
    if path.suffix == ".json":
        body = json.loads(raw)
        for key in ("call_id", "form_id", "post_id", "feedback_id", "entry_id", "message_id",
                    "review_id", "reference"):
            if key in body:
                body[key] = f"{body[key]}-{tag}"
        return json.dumps(body, ensure_ascii=False).encode()
    if path.suffix == ".eml":
        return re.sub(rb"(?im)^(Message-ID:\s*<)", rb"\g<1>" + tag.encode() + b".", raw, count=1)
    if path.suffix == ".xml":
        return re.sub(rb"<MsgId>(\d+)</MsgId>", lambda m: b"<MsgId>" + m.group(1) + str(
            abs(hash(tag)) % 1000).encode() + b"</MsgId>", raw)
    return raw + f"\n({tag})".encode()  # plain text has no id: its content is its identity


def _kafka_payload(raw: bytes, suffix: str) -> dict[str, object] | str:
    if suffix == ".json":
        return json.loads(raw)  # type: ignore[no-any-return]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"raw_base64": base64.b64encode(raw).decode()}


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_example_registers_alike_over_http_and_kafka(path: Path, intake_url: str, broker: str,
                                                     reader: TopicReader) -> None:
    channel = Channel(path.parent.name)
    tag = uuid.uuid4().hex[:8]
    # Given the channel's example, once posted over HTTP (signed)
    status, answer = post_inbound(intake_url, channel.value, _variant(path, f"h{tag}"),
                                  content_type=CONTENT_TYPES[path.suffix])
    assert status == 202, answer
    # and once, as a different message, produced to complaints.inbound
    inbound = InboundReceived.new(
        InboundMessage(channel=channel, payload=_kafka_payload(_variant(path, f"k{tag}"), path.suffix)),
        source="test", time=datetime.now(UTC), subject=None)
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send("complaints.inbound", value=inbound.to_bytes()).get(timeout=10)
    producer.close()
    # Then both become registered complaints with the same canonical content
    via_http = reader.wait(lambda e: e["_topic"] == "complaints.registered"
                           and e["subject"] == answer["complaint_id"], timeout=60, what="HTTP one")[0]
    via_kafka = reader.wait(lambda e: e["_topic"] == "complaints.registered"
                            and e["correlationid"] == inbound.id, timeout=60, what="Kafka one")[0]
    a, b = via_http["data"], via_kafka["data"]
    assert a["complaint_id"] != b["complaint_id"]
    if path.suffix == ".txt":
        b = {**b, "description": a["description"], "subject": a["subject"]}
    assert {k: a[k] for k in SAME if k != "customer"} == {k: b[k] for k in SAME if k != "customer"}
    assert _comparable(a["customer"]) == _comparable(b["customer"])
    assert a["description"] and a["channel"] == channel.value


def _comparable(customer: dict[str, object]) -> dict[str, object]:
    """A registered contact without what sealing makes differ between two registrations: the
    ciphertexts (a fresh nonce each) and, for a named complaint without an identity, the
    per-complaint subject (``anon-<complaint id>``). Which fields are sealed, the subject of an
    identified customer and the masked forms must be the same."""
    sealed = customer.get("sealed")
    rest = {k: v for k, v in customer.items() if k != "sealed"}
    if not isinstance(sealed, dict):
        return {**rest, "sealed": sealed}
    subject = str(sealed.get("subject"))
    return {**rest, "sealed": {"subject": "anon-*" if subject.startswith("anon-") else subject,
                               "fields": sorted(f for f in ("name", "phone", "email") if sealed.get(f))}}


def test_a_survey_reply_becomes_a_satisfaction_event(intake_url: str, reader: TopicReader) -> None:
    # Given a registered complaint
    status, answer = post_inbound(intake_url, "sms", {"text": "Internet down for three days", "sender": "13800138000"})
    assert status == 202
    cid = answer["complaint_id"]
    reader.wait(lambda e: e["_topic"] == "complaints.registered" and e["subject"] == cid, timeout=60,
                what="registered")
    # When the customer answers the revisit survey
    reply = json.loads((EXAMPLES / "survey_reply" / "dissatisfied.json").read_text())
    status, answer = post_inbound(intake_url, "survey_reply", {**reply, "complaint_id": cid,
                                                               "survey_id": f"S-{uuid.uuid4().hex[:6]}"})
    # Then it is recorded on the complaint as its satisfaction, not as a new complaint
    assert status == 202 and answer["complaint_id"] == cid and answer["recorded"] == "case_event"
    event = reader.wait(lambda e: e["_topic"] == "complaints.lifecycle" and e["subject"] == cid
                        and e["data"]["action"] == "satisfaction", timeout=60, what="satisfaction")[0]
    assert event["data"]["score"] == 2 and event["data"]["actor"] == "customer"
