"""Personal data sealed end to end, and a customer erased (docs/privacy.md): the real broker, Redis and
the six services as processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from kafka import KafkaProducer

from schemas.events import Channel, ComplaintRegistered, InboundMessage, InboundReceived, LetterSeal
from services.common import sealing
from services.common.pii_keys import KeyStore, read_keys
from tests.harness import Service, TopicReader, http, post_inbound, staff_headers, staff_step, wait_for

pytestmark = pytest.mark.integration

TOPICS = ("complaints.registered", "complaints.notifications", "complaints.deadletter")


@pytest.fixture()
def reader(broker: str, stack: dict[str, Service]) -> Iterator[TopicReader]:
    r = TopicReader(broker, *TOPICS)
    yield r
    r.close()


def _redis_bytes(url: str, prefix: str) -> bytes:
    """Every key and value under the test prefix, whatever its type, as one blob."""
    client = redis.Redis.from_url(url)
    out = []
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            kind = client.type(key)
            value: object = b""
            if kind == b"string":
                value = client.get(key)
            elif kind == b"hash":
                value = client.hgetall(key)
            elif kind == b"zset":
                value = client.zrange(key, 0, -1)
            elif kind == b"set":
                value = client.smembers(key)
            elif kind == b"list":
                value = client.lrange(key, 0, -1)
            out.append(key + b"=" + repr(value).encode())
    finally:
        client.close()
    return b"\n".join(out)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], env={**os.environ, **env},  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.timeout(480)  # the stack's start (when this test is the first to use it) and four CLI runs
def test_contact_details_are_sealed_everywhere_and_an_erased_customer_stays_unreadable(
        intake_url: str, desk_url: str, broker: str, redis_url: str, redis_prefix: str,
        reader: TopicReader, stack: dict[str, Service], stack_env: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:8]
    name, phone_digits, email = f"Zhang Wei {tag}", f"139{int(tag, 16) % 10**8:08d}", f"zhang.wei.{tag}@example.com"
    secrets_in_clear = (name.encode(), phone_digits.encode(), email.encode(), f"zhang.wei.{tag}".encode())

    # Given a complaint with a name, a phone and an e-mail over HTTP
    status, body = post_inbound(intake_url, "web_form", {
        "description": "The kettle leaks from the base after two days, I want a refund.",
        "name": name, "phone": phone_digits, "email": email, "language": "en"})
    assert status == 202, body
    cid = str(body["complaint_id"])
    # And one over Kafka that is bad input (no text): a dead letter holding the same details
    bad = InboundReceived.new(InboundMessage(channel=Channel.web_form, message_id=f"bad-{tag}", payload={
        "description": "", "name": name, "phone": phone_digits, "email": email}),
        source="test", time=datetime.now(UTC), subject=None)
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send("complaints.inbound", key=f"bad-{tag}".encode(), value=bad.to_bytes()).get(timeout=30)
    producer.close()

    # Then the acknowledgement still reaches the customer, at the clear address (the file outbox
    # of the stack is its transport), recorded with the masked address only
    ack = reader.wait(lambda e: e["_topic"] == "complaints.notifications" and e.get("subject") == cid
                      and e["data"]["kind"] == "acknowledgement" and e["data"]["status"] == "outboxed",
                      timeout=120, what="acknowledgement outboxed")[0]
    assert ack["data"]["recipient"] == "z***@example.com"
    delivered = json.loads((Path(stack_env["NOTIFIER_OUTBOX_DIR"]) /
                            f"{ack['data']['notification_id']}.json").read_text())
    assert delivered["address"] == email and cid in delivered["subject"]
    letter = reader.wait(lambda e: e["_topic"] == "complaints.deadletter" and e["data"]["service"] == "intake"
                         and bool(e["data"].get("sealed"))
                         and e["data"]["source"].startswith("complaints.inbound")
                         and _opens_to(e, stack_env, bad.id), timeout=120, what="the sealed dead letter")[0]
    assert letter["data"]["sealed"]["kek"] == "ktest"

    # And no clear name, phone or e-mail is on complaints.registered, .notifications, .deadletter,
    # .keys, nor anywhere in Redis under the stack's prefix
    reader.catch_up()
    registered = next(e for e in reader.events if e["_topic"] == "complaints.registered" and e["subject"] == cid)
    customer = registered["data"]["customer"]
    assert customer["email_masked"] == "z***@example.com" and customer["phone_masked"].endswith(phone_digits[-4:])
    assert {"name", "phone", "email"} <= customer["sealed"].keys()
    topics = b"\n".join([*(v for _, _, v in reader.raw if v), *(v for v in read_keys([broker]).values() if v)])
    redis_blob = _redis_bytes(redis_url, redis_prefix)
    for clear in secrets_in_clear:
        assert clear not in topics, "clear personal data on a topic"
        assert clear not in redis_blob, "clear personal data in Redis"

    # And a supervisor opening the contact on the desk reads it in clear (audited)
    contact_url = f"{desk_url}/v1/desk/cases/{cid}/contact"
    opened = wait_for(lambda: (r := http("GET", contact_url, headers=staff_headers()))[0] == 200 and r[1],
                      timeout=120, what="the desk to know the case")
    assert (opened["state"], opened["email"], opened["name"]) == ("open", email, name)

    # When the customer is erased by the e-mail (intake keys a customer who gave both by the phone;
    # the e-mail's key is recorded as its alias), then again by the phone and by the key
    first = _cli(stack_env, "erase-customer", "--email", email)
    assert first.returncode == 0, first.stderr
    subject = customer["sealed"]["subject"]
    assert "with 1 linked customer key(s)" in first.stdout and ": 1 data key(s) tombstoned" in first.stdout, \
        first.stdout
    by_phone = _cli(stack_env, "erase-customer", "--phone", phone_digits)
    again = _cli(stack_env, "erase-customer", "--customer-key", subject)
    for later in (by_phone, again):
        assert later.returncode == 0 and "no data key left" in later.stdout, later.stdout + later.stderr
    for out in (first.stdout + first.stderr, by_phone.stdout + by_phone.stderr, again.stdout + again.stderr):
        assert not any(c.decode() in out for c in secrets_in_clear)

    # Then its key is gone for good: the cache rebuilt from the topic has none, the contact does not open
    sealed_contact = ComplaintRegistered.model_validate(
        {k: v for k, v in registered.items() if not k.startswith("_")}).data.customer

    async def reopen() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.delete(f"{redis_prefix}pii:whole")  # as if Redis had lost the cache
            keys = KeyStore(client, prefix=redis_prefix, masters=sealing.master_keys(
                stack_env["PII_MASTER_KEYS"], Path("/nonexistent")), publisher=None,
                read=lambda: read_keys([broker]))
            with pytest.raises(sealing.Erased):
                await keys.open(sealed_contact)
            assert await client.exists(f"{redis_prefix}pii:whole")  # it was rebuilt from the topic
        finally:
            await client.aclose()

    asyncio.run(reopen())

    # And the desk shows the contact erased
    status, shown = http("GET", contact_url, headers=staff_headers())
    assert status == 200 and shown["state"] == "erased" and "email" not in shown

    # And a later message to the customer is not sent: failed, reason "erased"; the notifier runs on
    status, answer = staff_step(desk_url, cid, {"action": "resolved", "actor": "agent-9",
                                                "result": "Kettle refunded"})
    assert status == 202, answer
    failed = reader.wait(lambda e: e["_topic"] == "complaints.notifications" and e.get("subject") == cid
                         and e["data"]["kind"] == "result" and e["data"]["status"] == "failed",
                         timeout=120, what="result failed")[0]
    assert failed["data"]["detail"].startswith("erased")
    assert not (Path(stack_env["NOTIFIER_OUTBOX_DIR"]) / f"{failed['data']['notification_id']}.json").exists()
    wait_for(stack["notifier"].healthy, timeout=10, what="the notifier still healthy")


def _opens_to(event: dict, env: dict[str, str], inbound_id: str) -> bool:  # type: ignore[type-arg]
    """The sealed dead letter opens with the master key, to the original bytes (for an operator)."""
    data = event["data"]
    masters = sealing.master_keys(env["PII_MASTER_KEYS"], Path("/nonexistent"))
    original = sealing.open_blob(masters, base64.b64decode(data["original"]),
                                 LetterSeal.model_validate(data["sealed"]))
    return inbound_id.encode() in original
