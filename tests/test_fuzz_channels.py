"""A fuzz campaign per channel through the running intake: HTTP (signed POSTs) and Kafka.

200 generated payloads per channel and path (``tools.fuzz``: mutated examples, wrong types,
missing fields, huge strings, odd unicode, arbitrary bytes, nesting, bad Content-Types). Each
must be registered, recorded (a survey reply) or dead-lettered by intake with a classified
reason, or (HTTP) answered with a 4xx problem document; no 5xx, nothing missing, and intake
answers /healthz afterwards. `complaints fuzz --channel all --count 10000` is the large run.

The campaign has an intake and a broker of its own (as `complaints fuzz` runs against
`complaints up --only intake`): its thousands of registrations would otherwise queue ahead of
every later test's complaints in the shared stack's router, SLA monitor and notifier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from schemas.topics import INBOUND
from services.common.kafka import read_records
from tests.conftest import own_broker
from tests.harness import TEST_SECRET, Service, free_port, wait_for
from tools.fuzz.generate import CHANNELS, samples
from tools.fuzz.run import campaign, fuzz_kafka

pytestmark = pytest.mark.integration

COUNT = int(os.environ.get("COMPLAINTS_FUZZ_COUNT", "200"))  # the large run: 10000


@pytest.fixture(scope="module")
def own_intake(stack_env: dict[str, str], redis_prefix: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Service]]:
    """An intake on a broker of its own (the session's kind), keys under its own Redis prefix."""
    tmp = tmp_path_factory.mktemp("fuzz")
    with own_broker(tmp) as bootstrap:
        port = free_port()
        intake = Service("intake", {**stack_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                    "REDIS_PREFIX": f"{redis_prefix}fuzz:", "INTAKE_HTTP_PORT": str(port),
                                    "COMPLAINTS_DATA_DIR": str(tmp / "data")}, port, tmp)
        try:
            wait_for(intake.healthy, timeout=60, what="the fuzz campaign's intake healthy")
            yield bootstrap, intake
        finally:
            intake.stop()


@pytest.mark.timeout(max(420, 2 * COUNT))  # about 40 payloads/s on the loaded 2-core machine
def test_every_fuzzed_payload_is_registered_dead_lettered_or_a_4xx(
        own_intake: tuple[str, Service]) -> None:
    # Given a running intake; when every channel gets COUNT hostile payloads over HTTP and Kafka
    bootstrap, intake = own_intake
    report = campaign(CHANNELS, COUNT, intake_url=f"http://127.0.0.1:{intake.port}", bootstrap=[bootstrap],
                      secrets={"*": TEST_SECRET.encode()}, seed=20261203, timeout=max(240, COUNT / 2))
    text = report.text()
    print(text)  # the figures (pytest -s shows them)
    # Then each has its outcome: no 5xx, no unexpected dead letter, nothing missing
    assert report.ok, text
    assert all(t.sent == COUNT for t in report.tallies), text
    # and the campaign reached every outcome: registrations, dead letters and 4xx answers
    assert all(t.registered > 0 for t in report.tallies if t.channel != "survey_reply"), text
    assert all(sum(t.dead_lettered.values()) > 0 for t in report.tallies if t.via == "kafka"), text
    assert all(sum(t.client_errors.values()) > 0 for t in report.tallies if t.via == "http"), text
    # and intake stayed up
    assert report.healthy and intake.proc.poll() is None, text


class ExpiringProducer:
    """The real producer, except that every other record's first send fails the way kafka-python
    reports a batch that expired in a busy producer: in its future only, never raised."""

    def __init__(self, inner: KafkaProducer) -> None:
        self.inner, self.calls = inner, 0
        self.refused: set[bytes] = set()

    def send(self, topic: str, *, key: bytes, value: bytes) -> Any:
        self.calls += 1
        if self.calls % 2 and key not in self.refused:
            self.refused.add(key)
            return Future().failure(KafkaTimeoutError("Batch expired: 30000 ms has passed since batch creation"))
        return self.inner.send(topic, key=key, value=value)

    def flush(self) -> None:
        self.inner.flush()


def test_a_record_the_broker_did_not_take_is_sent_again_before_it_counts_as_sent(
        own_intake: tuple[str, Service]) -> None:
    # Given a producer that loses every other record's first send the way an expired batch is lost
    bootstrap, _ = own_intake
    real = KafkaProducer(bootstrap_servers=[bootstrap], acks="all")
    flaky = ExpiringProducer(real)
    items = list(samples("sms", 20, seed=7, tag="expired-"))
    try:
        # When the fuzz tool produces the samples
        tally, sent = fuzz_kafka(flaky, "sms", items)
    finally:
        real.close()
    # Then some sends failed, yet every sample is on the broker and counted sent once
    assert len(flaky.refused) == 10
    assert tally.sent == len(sent) == 20
    on_topic = {rec.key for rec in read_records([bootstrap], INBOUND.name)}
    assert flaky.refused <= on_topic
