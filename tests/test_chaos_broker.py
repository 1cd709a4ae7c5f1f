"""Chaos under a steady load on Apache Kafka: the broker stopped for 30 s; the broker ``kill -9``ed.

tests/test_chaos.py does the same with Redis stopped and each service killed, on tansu; tansu keeps
its log in memory, so a broker restart there loses every topic. Here the module runs an Apache
Kafka node of its own (tools/kafka_broker; its log dir under the module's tmp, a free port), a
Redis of its own, and the four services with KAFKA_IDEMPOTENT_PRODUCER=true (the setting
``complaints up --broker kafka`` uses). Each case produces the bench's inbound complaints at
10/s and, ten seconds in, either stops the broker cleanly (SIGTERM), keeps it down 30 s and
starts it again on the same port and log dir, or kills it (SIGKILL) and starts it again at once.

The load producer survives the outage as an integration would: an idempotent producer (acks=all)
with a delivery timeout longer than the outage buffers the records while the broker is away and
sends them when it is back; a record whose send fails anyway is sent again. Only records the
broker acknowledged count as sent, and the test waits until every record of the load is. The
load's producer and the test's reader of the topics retry connecting at least every second
(kafka-python backs off up to 30 s by default, which would be measured instead of the services).

Then the properties of test_chaos hold for the load (``check_nothing_lost_or_twice``): every
message registered exactly once and routed once, nothing dead-lettered because of the outage
(held in doubt only), no Message-ID / Idempotency-Key twice at the sinks, every breach one event
id. The recovery time printed: from the restart until everything acknowledged before the stop
has passed the last stage (registered, routed, respond breach, acknowledgement sent or held).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaError

from services.common.kafka import ensure_topics
from tests.harness import OwnRedis, TopicReader, free_port, wait_for
from tests.test_chaos import SERVICES, Load, Stack, check_nothing_lost_or_twice
from tools.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RATE = 10.0  # complaints per second
COUNT = 350  # a 35 s steady load
STOP_AT, DOWN_FOR = 10.0, 30.0  # seconds into the load; seconds the broker stays down when stopped
STAGES = ("intake", "router", "sla-monitor", "notifier")  # the order a complaint passes them
BROKER_START = 180.0  # a JVM (and, after a kill, its log recovery) on a busy 2-core box
DELIVERY_TIMEOUT_MS = 180_000  # the load's producer: longer than the outage and the restart
# kafka-python's clients (the load, the reader) back off reconnecting exponentially up to 30 s by
# default: after a 30 s outage they would find the broker back only up to 30 s late, and that
# delay, not the services', would be measured
RECONNECT_BACKOFF_MAX_MS = 1000


class AckedLoad(Load):
    """``Load`` whose producer survives a broker outage; ``sent`` counts acknowledged records."""

    def _go(self) -> None:
        self.acked: set[str] = set()
        self.resends = 0
        self.lock = threading.Lock()
        failed: list[int] = []
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                 enable_idempotence=True, delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
                                 request_timeout_ms=10_000, retry_backoff_ms=200, max_block_ms=120_000,
                                 reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)

        def send(i: int) -> None:
            _, key, value = self.records[i]
            while not self.stop.is_set():
                try:
                    future = producer.send("complaints.inbound", key=key, value=value)
                except KafkaError:  # the buffer full or no metadata for max_block_ms: try again
                    self.stop.wait(1)
                    continue
                future.add_callback(lambda _meta, i=i: self._acked(i))
                future.add_errback(lambda _exc, i=i: failed.append(i))
                return

        try:
            for i in range(len(self.records)):
                if self.stop.is_set():
                    return
                pause = self.t0 + i / self.rate - time.monotonic()
                if pause > 0:
                    self.stop.wait(pause)
                send(i)
            # until the broker acknowledged every record: send again what failed for good
            while not self.stop.is_set() and len(self.acked) < len(self.records):
                producer.flush(timeout=DELIVERY_TIMEOUT_MS / 1000)
                while failed:
                    self.resends += 1
                    send(failed.pop())
                self.stop.wait(0.2)
        finally:
            producer.close(timeout=10)

    def _acked(self, i: int) -> None:
        with self.lock:
            self.acked.add(self.message_ids[i])
            self.sent = len(self.acked)

    def acked_ids(self) -> list[str]:
        with self.lock:
            return sorted(self.acked)


class BrokerStack(Stack):
    """test_chaos's Stack over an Apache Kafka node of its own, which a test may stop and start."""

    def __init__(self, tmp: Path, roster: Path, node: KafkaBroker, store: OwnRedis) -> None:
        super().__init__(tmp, roster, node.bootstrap, store)
        self.node = node
        self.env["KAFKA_IDEMPOTENT_PRODUCER"] = "true"

    def start(self) -> None:
        super().start()
        assert self.reader is not None
        topics = {tp.topic for tp in self.reader.consumer.assignment()}
        self.reader.close()
        self.reader = TopicReader(self.bootstrap, *sorted(topics))


@pytest.fixture(scope="module")
def stack(test_roster: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerStack]:
    tmp = tmp_path_factory.mktemp("chaos-broker")
    store = OwnRedis(tmp / "redis")
    store.start()
    node = KafkaBroker(tmp / "kafka", free_port())
    try:
        node.start(timeout=BROKER_START)
        wait_for(lambda: ensure_topics([node.bootstrap]) is not None, timeout=60, what="topics")
        running = BrokerStack(tmp, test_roster, node, store)
        try:
            running.start()
            yield running
        finally:
            running.close()
    finally:
        node.stop()
        store.stop()


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("outage", ["stopped-30s", "killed"])
def test_broker_outage_under_load_loses_nothing_and_sends_nothing_twice(stack: BrokerStack, outage: str) -> None:
    since = stack.mark()
    # Given a steady load
    load = AckedLoad(stack.bootstrap, COUNT, RATE)
    try:
        # When the broker stops cleanly for 30 s, or is killed and started again at once, 10 s in
        wait_for(lambda: load.elapsed() >= STOP_AT, timeout=60, what="the outage", interval=0.05)
        backlog = load.acked_ids()
        down = time.monotonic()
        if outage == "stopped-30s":
            stack.node.stop()
            wait_for(lambda: time.monotonic() - down >= DOWN_FOR, timeout=DOWN_FOR + 10, what="30 s down",
                     interval=0.1)
        else:
            stack.node.kill()
        stack.node.start(timeout=BROKER_START)
        restarted = time.monotonic()
        # Then everything acknowledged before the outage passes every stage
        recovery: dict[str, float] = {}
        for stage in STAGES:
            wait_for(partial(stack.through, stage, backlog), timeout=600,
                     what=f"the backlog through {stage}", interval=0.5)
            recovery[stage] = round(time.monotonic() - restarted, 1)
        load.finish()
        assert load.sent == len(load.records), f"{load.sent} of {len(load.records)} acknowledged"
        for name in SERVICES:
            assert stack.services[name].proc.poll() is None, f"{name} exited:\n{stack.services[name].log_tail()}"
        # and nothing is lost, dead-lettered or sent twice; every breach is on the topic once
        figures = check_nothing_lost_or_twice(stack, load, since)
    finally:
        load.close()
    print(json.dumps({"chaos": f"broker {outage}", "broker_down_s": round(restarted - down, 1),
                      "acknowledged_before_outage": len(backlog), "load_resends": load.resends,
                      "recovery_s_from_restart_through_stage": recovery,
                      "recovery_s": recovery["notifier"],
                      "total_s": round(load.elapsed(), 1), **figures}))
