"""Issue 17 through the real stack: an SMS "4" after the revisit is satisfaction, not a complaint.

The session stack's notifier has no SMS gateway (it writes to the file outbox, recorded
``outboxed``, which reached nobody), so the test plays the gateway's side: it records the revisit
``sent`` on complaints.notifications, as the notifier does after a gateway accepted it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from kafka import KafkaProducer

from schemas.events import Contact, NotificationEvent, NotificationKind, NotificationRecord
from services.intake.logic import customer_key
from tests.harness import IDENTITY_KEY, Service, TopicReader, post_inbound, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture()
def reader(broker: str, stack: dict[str, Service]) -> Iterator[TopicReader]:
    r = TopicReader(broker, "complaints.registered", "complaints.lifecycle")
    yield r
    r.close()


def _sms(intake_url: str, phone: str, text: str, message_id: str | None = None) -> dict[str, object]:
    status, body = post_inbound(intake_url, "sms", {"message_id": message_id or f"SM-{uuid.uuid4()}",
                                                    "sender": phone, "text": text})
    assert status == 202, body
    return dict(body)


def test_an_sms_score_after_the_revisit_is_satisfaction_on_that_complaint(
        intake_url: str, broker: str, redis_url: str, redis_prefix: str, reader: TopicReader) -> None:
    # Given a customer's complaint by SMS (a phone of this test's own)
    phone = f"+86139{uuid.uuid4().int % 10**8:08d}"
    cid = str(_sms(intake_url, phone, "洗衣机漏水，师傅来了两次都没修好")["complaint_id"])
    # and its revisit sent to the customer, which intake's timeline consumer indexes
    record = NotificationRecord(notification_id=f"n-{uuid.uuid4()}", complaint_id=cid, kind=NotificationKind.revisit,
                                transport="sms:sms", recipient="+86*******0000", language="zh",
                                status="sent")
    event = NotificationEvent.new(record, source="notifier", time=datetime.now(UTC), subject=cid)
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send("complaints.notifications", key=cid.encode(), value=event.to_bytes())
    producer.flush()
    producer.close()
    client = redis.Redis.from_url(redis_url)
    index = f"{redis_prefix}intake:revisits:" + customer_key(Contact(phone=phone), account=None,
                                                             secret=IDENTITY_KEY.encode())
    wait_for(lambda: client.zscore(index, cid) is not None, timeout=60, what="revisit indexed")

    # When the customer answers "4" by SMS
    answer = _sms(intake_url, phone, "4，师傅很专业", message_id=f"SM-answer-{cid}")
    # Then it is recorded as a case event on that complaint, not registered
    assert (answer["recorded"], answer["complaint_id"], answer["duplicate"]) == ("case_event", cid, False)
    (satisfaction,) = reader.wait(lambda e: e["_topic"] == "complaints.lifecycle" and e["subject"] == cid
                                  and e["data"]["action"] == "satisfaction", timeout=60, what="satisfaction")
    assert satisfaction["id"] == answer["event_id"]
    assert (satisfaction["data"]["actor"], satisfaction["data"]["score"], satisfaction["data"]["note"]) == \
        ("customer", 4, "师傅很专业")
    # and the answer, back through the timeline, closes the revisit
    wait_for(lambda: client.zscore(index, cid) is None, timeout=60, what="revisit closed")

    # When the SMS gateway delivers the answer again; Then the same event, no registration
    again = _sms(intake_url, phone, "4，师傅很专业", message_id=f"SM-answer-{cid}")
    assert (again["recorded"], again["event_id"], again["duplicate"]) == ("case_event", answer["event_id"], True)

    # When the customer then writes that it broke again; Then that is a new complaint
    grievance = _sms(intake_url, phone, "还是没修好，又坏了")
    assert grievance["recorded"] == "registered" and grievance["complaint_id"] != cid
    reader.wait(lambda e: e["_topic"] == "complaints.registered" and e["subject"] == grievance["complaint_id"],
                timeout=60, what="grievance registered")
    # and the answer was never registered
    assert not [e for e in reader.events if e["_topic"] == "complaints.registered"
                and e["data"]["source_message_id"] == f"sms:id:SM-answer-{cid}"]
    client.close()
