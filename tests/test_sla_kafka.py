"""The SLA monitor as deployed: two processes on a private broker, one killed, Redis flushed.

Complaints are routed straight onto complaints.routed with SLA targets scaled 3600 times
(1 h -> 1 s) and a business calendar open around the clock, then left alone: every
milestone warns and breaches. Mid-run one monitor is killed with SIGKILL and started
again, and later every key of the monitor is deleted from Redis. Each alert must exist
under exactly one id, none missing.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from kafka import KafkaProducer

from schemas.events import ComplaintRouted, Level, RoutingDecision, Severity
from services.sla_monitor.calendar import ALWAYS_OPEN
from tests.conftest import own_broker
from tests.harness import Service, TopicReader, free_port, http, produce, wait_for

pytestmark = pytest.mark.integration
SCALE = 3600
TIMED = ("acknowledge", "respond", "plan", "resolve")  # dispatch is met at once (a handler)


def routed_event(run: str, i: int) -> ComplaintRouted:
    cid = f"S{run}-{i:04d}"
    now = datetime.now(UTC)
    d = RoutingDecision(complaint_id=cid, received_at=now, code="PQ-01", severity=Severity.general,
                        department="quality", level=Level.L1, handler="quality-l1-01",
                        first_contact_owner="web-desk", reasons=[])
    return ComplaintRouted.new(d, source="tests", time=now, subject=cid)


def metric(port: int, name: str) -> float:
    text = http("GET", f"http://127.0.0.1:{port}/metrics")[1]
    return sum(float(line.rsplit(" ", 1)[1]) for line in str(text).splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def test_two_monitors_one_killed_and_a_flushed_redis_alert_each_deadline_once(
        redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    count, run = 150, uuid.uuid4().hex[:6]
    prefix = f"{redis_prefix}sla-{run}:"
    with own_broker(tmp_path) as bootstrap:
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_REBALANCE_TIMEOUT": "3",
               "REDIS_URL": redis_url, "REDIS_PREFIX": prefix, "COMPLAINTS_SLA_SCALE": str(SCALE),
               "SLA_MONITOR_CALENDAR_FILE": str(ALWAYS_OPEN), "SLA_MONITOR_CLAIM_LEASE": "2",
               "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "info"}
        ports = [free_port(), free_port(), free_port()]
        monitors = [Service("sla-monitor", {**env, "SLA_MONITOR_HTTP_PORT": str(p)}, p, tmp_path)
                    for p in ports[:2]]
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        reader = TopicReader(bootstrap, "complaints.sla")
        client = redis.Redis.from_url(redis_url)
        try:
            for m in monitors:
                wait_for(m.healthy, timeout=60, what="sla-monitor healthy")
            # Given complaints nobody handles, routed while two monitors run
            produce(producer, "complaints.routed", (routed_event(run, i) for i in range(count)))

            def outcomes(milestone: str, outcome: str) -> set[str]:
                reader.poll()
                return {e["subject"] for e in reader.events
                        if e["data"]["milestone"] == milestone and e["data"]["outcome"] == outcome}

            # When the first deadlines pass, one monitor is killed and started again
            wait_for(lambda: len(outcomes("respond", "breached")) >= count // 2, timeout=60,
                     what="half the respond breaches")
            monitors[0].stop(kill=True)
            monitors.append(Service("sla-monitor", {**env, "SLA_MONITOR_HTTP_PORT": str(ports[2])},
                                    ports[2], tmp_path))
            wait_for(monitors[2].healthy, timeout=60, what="the restarted monitor healthy")
            wait_for(lambda: len(outcomes("respond", "breached")) == count, timeout=60,
                     what="every respond breach")
            # And later Redis loses every key of the monitor
            for key in client.scan_iter(match=f"{prefix}sla:*"):
                client.delete(key)
            # Then every timed milestone still breaches once per complaint
            for milestone in TIMED:
                wait_for(lambda m=milestone: len(outcomes(m, "breached")) == count, timeout=90,  # type: ignore[misc]
                         what=f"every {milestone} breach")
            wait_for(lambda: client.exists(f"{prefix}sla:epoch") == 1, timeout=30, what="rebuilt")
            assert sum(metric(m.port, "complaints_sla_rebuilds_total") for m in monitors[1:]) >= 1
            reader.poll()
            per_key = Counter((e["subject"], e["data"]["milestone"], e["data"]["cycle"], e["data"]["outcome"],
                               e["data"]["threshold"]) for e in {e["id"]: e for e in reader.events}.values())
            assert set(per_key.values()) == {1}, [k for k, n in per_key.items() if n > 1][:5]
            for milestone in TIMED:
                for outcome in ("started", "breached"):
                    assert len(outcomes(milestone, outcome)) == count, (milestone, outcome)
                warned = Counter(e["data"]["threshold"] for e in {x["id"]: x for x in reader.events}.values()
                                 if e["data"]["milestone"] == milestone and e["data"]["outcome"] == "warning")
                assert warned == {0.5: count, 0.8: count}, (milestone, warned)
            records = Counter(e["id"] for e in reader.events)
            repeats = sum(n - 1 for n in records.values())
            print(json.dumps({"alerts": len(records), "records": len(reader.events),
                              "repeated_records": repeats}))
        finally:
            producer.close()
            reader.close()
            client.close()
            for m in monitors:
                m.stop()
