"""The bench's raw broker baselines on the session's broker (Apache Kafka in CI): both clients
produce and read back every record of the run."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer, KafkaProducer

from services.common.kafka import ensure_topics
from services.common.transport import from_environment
from tools.bench.kafka import BASELINE, aio_baseline, baseline

pytestmark = pytest.mark.integration


def test_both_baselines_read_back_every_record_they_produced(broker: str) -> None:
    # Given the baseline topic and 500 records
    ensure_topics([broker], (BASELINE,))
    records = [(f"e{i}", f"baseline-test-{i}".encode(), b"x" * 400) for i in range(500)]
    # When kafka-python's and then aiokafka's baseline run (each raises unless it consumed them all)
    producer = KafkaProducer(bootstrap_servers=[broker], acks="all", linger_ms=5)
    consumer = KafkaConsumer(bootstrap_servers=[broker], group_id=None, enable_auto_commit=False)
    try:
        sync = baseline(producer, consumer, records, 60)
    finally:
        producer.close()
        consumer.close()
    aio = aio_baseline([broker], records, 60, transport=from_environment())
    # Then both report a rate over every partition of the topic (aiokafka found them: on Apache
    # Kafka its consumer's metadata had none, so it read nothing)
    assert sync[2] == aio[2] == BASELINE.partitions
    assert min(sync[:2]) > 0 and min(aio[:2]) > 0
