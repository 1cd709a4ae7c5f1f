"""Scale-out on one machine: two instances of every service, a steady load, kill -9 in turn.

A private broker and Redis prefix; the bench's inbound complaints (web form, phone, e-mail,
store: every one has a contact, so every one owes an acknowledgement by SMS or e-mail)
produced at a steady rate to complaints.inbound. Meanwhile one instance of each service
is killed with SIGKILL, one after another; the other carries on. SLA targets are scaled
3600 times on an always-open calendar, and nobody handles the complaints, so every
complaint's respond deadline is breached within seconds.

Then: every message registered exactly once and routed; no acknowledgement reached a sink
twice (NOTIFIER_IN_DOUBT=hold), each reached its sink or is held in doubt with a dead
letter; every respond deadline breached, each under exactly one alert id.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from kafka import KafkaProducer

from services.common.policy import DEFAULT_POLICY
from services.sla_monitor.calendar import ALWAYS_OPEN
from tests.conftest import SLA_SCALE, own_broker
from tests.harness import STAFF_SECRET, TEST_SECRET, Service, TopicReader, free_port, wait_for
from tests.sinks import MailSink, http_sink
from tools.bench.load import inbound_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERVICES = ("intake", "router", "sla-monitor", "notifier")
PORT_VAR = {"intake": "INTAKE_HTTP_PORT", "router": "ROUTER_HTTP_PORT",
            "sla-monitor": "SLA_MONITOR_HTTP_PORT", "notifier": "NOTIFIER_HTTP_PORT"}
COUNT, RATE = 600, 20.0  # complaints, per second: a 30 s steady load
KILL_EVERY = 5.0  # seconds between the kills, the first after one interval


def steady_load(bootstrap: str, run: str, stop: threading.Event) -> threading.Thread:
    """Produce the bench's inbound records at RATE per second in a thread."""
    records = inbound_records(run, COUNT)

    def go() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        t0 = time.monotonic()
        for i, (_, key, value) in enumerate(records):
            if stop.is_set():
                break
            pause = t0 + i / RATE - time.monotonic()
            if pause > 0:
                stop.wait(pause)
            producer.send("complaints.inbound", key=key, value=value)
        producer.flush()
        producer.close()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(600)
def test_two_of_each_service_one_of_each_killed_in_turn(redis_url: str, redis_prefix: str,
                                                        test_roster: Path, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["notifier"]["quiet_hours"] = None  # the test must not depend on the hour it runs at
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    mail = MailSink()
    smtp = Controller(mail, hostname="127.0.0.1", port=free_port())
    smtp.start()
    server, sms = http_sink()
    stop = threading.Event()
    with own_broker(tmp_path) as bootstrap:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_REBALANCE_TIMEOUT": "3",
               "REDIS_URL": redis_url, "REDIS_PREFIX": f"{redis_prefix}scale-{run}:",
               "COMPLAINTS_POLICY_FILE": str(policy_file), "COMPLAINTS_SLA_SCALE": str(SLA_SCALE),
               "SLA_MONITOR_CALENDAR_FILE": str(ALWAYS_OPEN), "SLA_MONITOR_CLAIM_LEASE": "10",
               "ROUTER_ROSTER_FILE": str(test_roster),
               "INTAKE_SIGNING_SECRETS": json.dumps({"*": TEST_SECRET}), "DESK_JWT_SECRET": STAFF_SECRET,
               "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "NOTIFIER_OUTBOX_DIR": str(tmp_path / "outbox"),
               "NOTIFIER_OUTBOX_ENABLED": "true",  # the staff's notices: no chat configured
               "NOTIFIER_SMTP": json.dumps({"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                            "sender": "service@example.com", "domain": "example.com",
                                            "timeout": 2}),
               "NOTIFIER_SMS_GATEWAY": json.dumps({"url": f"http://127.0.0.1:{server.server_port}/sms",
                                                   "timeout": 2}),
               "NOTIFIER_SEND_LEASE": "3", "NOTIFIER_IN_DOUBT": "hold", "LOG_LEVEL": "info"}
        fleet: dict[str, list[Service]] = defaultdict(list)
        reader = TopicReader(bootstrap, "complaints.registered", "complaints.routed", "complaints.sla",
                             "complaints.notifications", "complaints.deadletter")
        load: threading.Thread | None = None
        try:
            for name in SERVICES:
                for _ in range(2):
                    port = free_port()
                    fleet[name].append(Service(name, {**env, PORT_VAR[name]: str(port)}, port, tmp_path))
            for services in fleet.values():
                for svc in services:
                    wait_for(svc.healthy, timeout=90, what=f"{svc.name} healthy")

            # Given a steady load from the bench's generator
            t0 = time.monotonic()
            load = steady_load(bootstrap, run, stop)
            # When one instance of each service is killed in turn while it runs
            for i, name in enumerate(SERVICES, start=1):
                wait_for(lambda i=i: time.monotonic() - t0 >= i * KILL_EVERY, timeout=60,  # type: ignore[misc]
                         what=f"kill #{i}", interval=0.05)
                fleet[name][0].stop(kill=True)
            load.join(timeout=120)
            assert not load.is_alive(), "the load generator did not finish"

            def of(event_type: str) -> list[dict[str, object]]:
                reader.poll()
                return [e for e in reader.events if e["type"] == event_type]

            def complaints() -> dict[str, set[str]]:
                """source message id -> complaint ids registered for it."""
                out: dict[str, set[str]] = defaultdict(set)
                for e in of("complaint.registered"):
                    data = e["data"]
                    out[data["source_message_id"]].add(data["complaint_id"])  # type: ignore[index]
                return out

            # Then every message is registered once
            wait_for(lambda: len(complaints()) == COUNT, timeout=120, what=f"{COUNT} registered")
            registered = complaints()
            assert all(len(ids) == 1 for ids in registered.values()), \
                [m for m, ids in registered.items() if len(ids) > 1][:5]
            cids = {next(iter(ids)) for ids in registered.values()}

            # and routed, with one first decision each
            def routed() -> dict[str, set[str]]:
                out: dict[str, set[str]] = defaultdict(set)
                for e in of("complaint.routed"):
                    if e["data"]["revision"] == 1:  # type: ignore[index]
                        out[str(e["subject"])].add(str(e["id"]))
                return out
            wait_for(lambda: cids <= routed().keys(), timeout=120, what="every complaint routed")
            assert all(len(ids) == 1 for ids in routed().values())

            # and no acknowledgement went twice; each arrived or is held in doubt, dead-lettered
            def held() -> set[str]:
                return {str(e["data"]["notification_id"]) for e in of("notification.recorded")  # type: ignore[index]
                        if e["data"]["status"] == "in_doubt"}  # type: ignore[index]

            def arrived() -> set[str]:
                # the sinks' threads add while this reads: copies (the mail sink's under its lock;
                # dict.copy of the gateway's counter is one step under the GIL)
                with mail.lock:
                    ids = list(mail.ids)
                return {k.strip("<>").split("@")[0] for k in ids} | set(dict.copy(sms))

            def acknowledged() -> tuple[dict[str, tuple[str, object]], Counter[object]]:
                """Notification id -> (kind, complaint); complaint -> its acknowledgements that
                arrived or are held (staff notices arrive too: they are not counted)."""
                notes = {str(e["data"]["notification_id"]): (e["data"]["kind"], e["subject"])  # type: ignore[index]
                         for e in of("notification.recorded")}
                return notes, Counter(notes[n][1] for n in arrived() | held()
                                      if notes.get(n, ("?",))[0] == "acknowledgement")

            # (the notifiers drain every customer message and staff notice of the run: on a box
            # loaded by other work that took over two minutes once)
            wait_for(lambda: set(acknowledged()[1]) >= cids, timeout=300, what="every acknowledgement")
            with mail.lock:
                mails = dict(mail.ids)
            twice = {k: n for k, n in [*mails.items(), *dict.copy(sms).items()] if n > 1}
            assert twice == {}, twice
            notes, acks = acknowledged()
            assert set(acks) == cids and set(acks.values()) == {1}, \
                ([notes.get(n) for n in arrived() | held() if notes.get(n, ("?",))[0] != "acknowledgement"],
                 [c for c, n in acks.items() if n > 1])
            # (in doubt are only the sends in flight at the kill, at most 8 per server's transport:
            # the SMTP sink's and the gateway's; the file outbox's repeat reaches nobody: resent)
            assert len(held()) <= 2 * 8
            assert not held() & {n for n, (kind, _) in notes.items() if kind != "acknowledgement"}
            letters = [e for e in of("deadletter.recorded") if e["data"]["error_type"] == "InDoubtDelivery"]  # type: ignore[index]
            assert len(letters) == len(held())

            # and every respond deadline breached, each under one alert id
            def breaches() -> dict[str, set[str]]:
                out: dict[str, set[str]] = defaultdict(set)
                for e in of("sla.alert"):
                    d = e["data"]
                    if d["milestone"] == "respond" and d["outcome"] == "breached":  # type: ignore[index]
                        out[str(e["subject"])].add(str(e["id"]))
                return out
            wait_for(lambda: cids <= breaches().keys(), timeout=120, what="every respond breach")
            assert all(len(ids) == 1 for ids in breaches().values())
            alerts = Counter(str(e["id"]) for e in of("sla.alert"))
            per_alert = Counter((e["subject"], e["data"]["milestone"], e["data"]["cycle"],  # type: ignore[index]
                                 e["data"]["outcome"], e["data"]["threshold"])  # type: ignore[index]
                                for e in {str(x["id"]): x for x in of("sla.alert")}.values())
            assert set(per_alert.values()) == {1}
            print(json.dumps({
                "complaints": COUNT, "rate_per_s": RATE, "instances": 2, "killed": list(SERVICES),
                "seconds": round(time.monotonic() - t0, 1), "sla_alerts": len(alerts),
                "sla_records_repeated": sum(n - 1 for n in alerts.values()),
                "acknowledgements_arrived": len(arrived()), "held_in_doubt": len(held()),
                "routed_records": sum(1 for _ in of("complaint.routed"))}))
        finally:
            stop.set()
            if load is not None:
                load.join(timeout=10)
            reader.close()
            for services in fleet.values():
                for svc in services:
                    svc.stop()
            smtp.stop()
            server.shutdown()
            server.server_close()
