"""The notifier as deployed: two processes on a private broker, real SMTP and HTTP sinks
that count what they receive, one notifier killed with SIGKILL mid-run.

A notification the killed process was sending at that moment is in doubt: the sink may or
may not have it. Under NOTIFIER_IN_DOUBT=resend (the default) every notification reaches its
sink and only those in doubt may arrive twice, under the same id (the gateway's
Idempotency-Key, the e-mail's Message-ID). Under NOTIFIER_IN_DOUBT=hold none arrives twice;
each one either arrives or, in doubt, is recorded ``in_doubt`` and dead-lettered. Either way
at most NOTIFIER_TRANSPORT_CONCURRENCY per transport are in doubt.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from kafka import KafkaProducer

from schemas.events import Channel, Complaint, ComplaintRegistered, Contact
from services.common.policy import DEFAULT_POLICY
from tests.conftest import own_broker
from tests.harness import Service, TopicReader, free_port, produce, wait_for
from tests.sinks import MailSink, http_sink

pytestmark = pytest.mark.integration


def registered(run: str, i: int) -> ComplaintRegistered:
    cid = f"N{run}-{i:04d}"
    now = datetime.now(UTC)
    # a number of its own each: NOTIFIER_RECIPIENT_LIMIT allows one number 10 messages a day
    contact = Contact(email=f"c{i}@example.com") if i % 2 else Contact(phone=f"+86138{i:08d}")
    c = Complaint(complaint_id=cid, channel=Channel.web_form, received_at=now, source_message_id=cid,
                  customer=contact, customer_key=cid, first_contact="web-desk", subject="s", description="d")
    return ComplaintRegistered.new(c, source="tests", time=now, subject=cid)


@pytest.mark.parametrize("in_doubt", ["resend", "hold"])
def test_two_notifiers_one_killed_send_every_acknowledgement_once(
        redis_url: str, redis_prefix: str, tmp_path: Path, in_doubt: str) -> None:
    count, run = 400, uuid.uuid4().hex[:6]
    # no quiet hours: the test must not depend on the hour it runs at
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["notifier"]["quiet_hours"] = None
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    mail = MailSink()
    smtp = Controller(mail, hostname="127.0.0.1", port=free_port())
    smtp.start()
    server, sms = http_sink()
    with own_broker(tmp_path) as bootstrap:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_REBALANCE_TIMEOUT": "3", "REDIS_URL": redis_url,
               "REDIS_PREFIX": f"{redis_prefix}notify-{run}:", "COMPLAINTS_POLICY_FILE": str(policy_file),
               "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "NOTIFIER_OUTBOX_DIR": str(tmp_path / "outbox"),
               "NOTIFIER_OUTBOX_ENABLED": "true",  # the staff's notices: no chat configured
               "NOTIFIER_SMTP": json.dumps({"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                            "sender": "service@example.com", "domain": "example.com",
                                            "timeout": 2}),
               "NOTIFIER_SMS_GATEWAY": json.dumps({"url": f"http://127.0.0.1:{server.server_port}/sms",
                                                   "timeout": 2}),
               "NOTIFIER_SEND_LEASE": "3", "NOTIFIER_IN_DOUBT": in_doubt, "LOG_LEVEL": "info"}
        ports = [free_port(), free_port(), free_port()]
        notifiers = [Service("notifier", {**env, "NOTIFIER_HTTP_PORT": str(p)}, p, tmp_path) for p in ports[:2]]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        try:
            for n in notifiers:
                wait_for(n.healthy, timeout=60, what="notifier healthy")
            produce(producer, "complaints.registered", (registered(run, i) for i in range(count)))

            reader = TopicReader(bootstrap, "complaints.notifications", "complaints.deadletter")

            def delivered() -> int:
                return len(mail.ids) + len(sms)

            def held() -> set[str]:
                reader.poll()
                return {e["data"]["notification_id"] for e in reader.events
                        if e["type"] == "notification.recorded" and e["data"]["status"] == "in_doubt"}

            # When one notifier is killed mid-run and another starts
            wait_for(lambda: delivered() >= count // 4, timeout=60, what="a quarter delivered")
            notifiers[0].stop(kill=True)
            notifiers.append(Service("notifier", {**env, "NOTIFIER_HTTP_PORT": str(ports[2])}, ports[2],
                                     tmp_path))
            if in_doubt == "resend":
                # Then every acknowledgement arrives; only those in doubt at the kill may repeat
                wait_for(lambda: delivered() == count, timeout=120, what=f"{count} delivered")
                twice = {k: n for k, n in [*mail.ids.items(), *sms.items()] if n > 1}
                assert len(mail.ids) == count // 2 and len(sms) == count // 2
                assert all(n == 2 for n in twice.values()) and len(twice) <= 2 * 8, twice
                assert held() == set()
            else:
                # Then none arrives twice; each arrives or is held in doubt (it may have
                # arrived: the sink took it as the sender died), with a dead letter
                def arrived() -> set[str]:
                    return {k.strip("<>").split("@")[0] for k in mail.ids} | set(sms)

                wait_for(lambda: len(arrived() | held()) == count, timeout=120,
                         what=f"{count} delivered or held")
                twice = {k: n for k, n in [*mail.ids.items(), *sms.items()] if n > 1}
                assert twice == {} and len(held()) <= 2 * 8
                # a dead letter names its notification (source "notification:<id>"); its subject is
                # the complaint, whose e-mail and SMS may both be held
                def letters() -> set[str]:
                    reader.poll()
                    return {e["data"]["source"].removeprefix("notification:") for e in reader.events
                            if e["type"] == "deadletter.recorded"}

                wait_for(lambda: letters() == held(), timeout=30,
                         what="a dead letter for each notification held")
            print(json.dumps({"in_doubt": in_doubt, "notifications": count, "repeated": len(twice),
                              "held": len(held())}))
            reader.close()
        finally:
            producer.close()
            for n in notifiers:
                n.stop()
            smtp.stop()
            server.shutdown()
            server.server_close()
