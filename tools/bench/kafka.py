"""Kafka for `complaints bench`: produce and flush, read from the end offsets, the raw broker
baselines (kafka-python, then aiokafka: faust's client), and the watcher that notes when each
expected event shows up."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from aiokafka.errors import KafkaError as AioKafkaError
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.events import InboundReceived
from schemas.topics import INBOUND, PARTITIONS, TopicSpec
from services.common.settings import TransportSettings
from services.common.transport import aiokafka_kwargs
from tools.bench import BenchError
from tools.bench import report as rpt
from tools.bench.load import Record

log = logging.getLogger(__name__)

# how long the bench's watching consumer lets a fetch wait: on tansu, which answers a fetch when
# the wait ends, the watcher adds up to this much to every hop it times (half on average)
WATCH_FETCH_WAIT_MS = 10
BASELINE = TopicSpec("complaints.bench-baseline", PARTITIONS, "none", InboundReceived,
                     "Raw broker baseline of `complaints bench`; bench records only.")


def produce(producer: KafkaProducer, topic: str, records: Sequence[Record]
             ) -> tuple[dict[str, float], float]:
    """Send and flush; return the send time of every id and the seconds to the flush."""
    sent: dict[str, float] = {}
    futures = []
    start = time.perf_counter()
    for event_id, key, value in records:
        sent[event_id] = time.perf_counter()
        futures.append(producer.send(topic, key=key, value=value))
    producer.flush()
    elapsed = time.perf_counter() - start
    failed = sum(1 for fut in futures if fut.failed())
    if failed:
        raise BenchError(f"{failed} of {len(records)} records to {topic} were not acknowledged")
    return sent, elapsed


def partitions(consumer: KafkaConsumer, *topics: str) -> list[TopicPartition]:
    """Every partition of the topics the broker knows (none for a missing topic)."""
    return [TopicPartition(t, p) for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())]


def start_at_end(consumer: KafkaConsumer, tps: list[TopicPartition]) -> None:
    """Assign the partitions and seek each to its current end (no consumer group)."""
    consumer.assign(tps)
    for tp, offset in consumer.end_offsets(tps).items():
        consumer.seek(tp, offset)


def baseline(producer: KafkaProducer, consumer: KafkaConsumer, records: Sequence[Record],
              timeout: float) -> tuple[float, float, int]:
    """Produce then consume N records through one topic: (produce/s, consume/s, partitions)."""
    tps = partitions(consumer, BASELINE.name)
    start_at_end(consumer, tps)
    _, produce_s = produce(producer, BASELINE.name, records)
    keys = {key for _, key, _ in records}  # the broker's end offsets may lag: skip older records
    got, start = 0, time.perf_counter()
    last, deadline = start, start + timeout
    while got < len(records) and time.perf_counter() < deadline:
        n = sum(rec.key in keys for batch in consumer.poll(timeout_ms=200).values() for rec in batch)
        if n:
            got, last = got + n, time.perf_counter()
    if got < len(records):
        raise BenchError(f"baseline: consumed {got} of {len(records)} within {timeout} s")
    return rpt.rate(len(records), produce_s), rpt.rate(got, last - start), len(tps)


def aio_baseline(bootstrap: list[str], records: Sequence[Record], timeout: float, *,
                 transport: TransportSettings, linger_ms: int = 5, max_batch_size: int = 16384
                 ) -> tuple[float, float, int]:
    """``baseline`` with aiokafka (the client faust runs): the same topic, records and acks=all,
    idempotent under KAFKA_IDEMPOTENT_PRODUCER; (produce/s, consume/s, partitions)."""
    try:
        return asyncio.run(_aio_baseline(bootstrap, records, timeout, transport=transport,
                                         linger_ms=linger_ms, max_batch_size=max_batch_size))
    except AioKafkaError as exc:  # aiokafka's errors are not kafka-python's
        raise BenchError(f"aiokafka baseline: {exc!r}") from exc


async def _aio_baseline(bootstrap: list[str], records: Sequence[Record], timeout: float, *,
                        transport: TransportSettings, linger_ms: int, max_batch_size: int
                        ) -> tuple[float, float, int]:
    security = aiokafka_kwargs(transport)  # TLS / SASL (services/common/transport.py)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                                group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100,
                                **security)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                                acks="all", linger_ms=linger_ms, max_batch_size=max_batch_size,
                                enable_idempotence=transport.kafka_idempotent_producer, **security)
    await consumer.start()
    try:
        await producer.start()
        try:
            # the producer waits for the topic's metadata (the consumer's topics() does not fill
            # its own cluster view on Apache Kafka: no partitions, nothing assigned, 0 consumed)
            tps = [AioTopicPartition(BASELINE.name, p)
                   for p in sorted(await producer.partitions_for(BASELINE.name))]
            if not tps:
                raise BenchError(f"aiokafka baseline: {BASELINE.name} has no partitions")
            ends = await consumer.end_offsets(tps)
            # assigned only after the produce: aiokafka fetches in the background once assigned,
            # which would overlap the two phases that kafka-python's baseline runs one by one
            start = time.perf_counter()
            futures = [await producer.send(BASELINE.name, key=key, value=value)
                       for _, key, value in records]
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
            produce_s = time.perf_counter() - start
        finally:
            await producer.stop()
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        if failed:
            raise BenchError(f"aiokafka baseline: {failed} of {len(records)} records to "
                             f"{BASELINE.name} were not acknowledged")
        keys = {key for _, key, _ in records}  # the broker's end offsets may lag: skip older records
        got, start = 0, time.perf_counter()
        consumer.assign(tps)
        for tp, offset in ends.items():
            consumer.seek(tp, offset)
        last, deadline = start, start + timeout
        while got < len(records) and (left := deadline - time.perf_counter()) > 0:
            batches = await consumer.getmany(timeout_ms=int(min(0.2, left) * 1000))
            n = sum(rec.key in keys for batch in batches.values() for rec in batch)
            if n:
                got, last = got + n, time.perf_counter()
    finally:
        await consumer.stop()
    if got < len(records):
        raise BenchError(f"aiokafka baseline: consumed {got} of {len(records)} within {timeout} s")
    return rpt.rate(len(records), produce_s), rpt.rate(got, last - start), len(tps)


class Watcher(threading.Thread):
    """Polls the watched topics; notes when each expected inbound id shows up, by kind."""

    def __init__(self, consumer: KafkaConsumer, expected: frozenset[str], final: tuple[str, ...]
                 ) -> None:
        super().__init__(name="bench-watcher", daemon=True)
        self.consumer, self.expected, self.final = consumer, expected, final
        self.seen: dict[str, dict[str, float]] = {
            k: {} for k in ("routed", "acked", "ack_failed", "ack_deferred", "registered", "dead")}
        self.error: BaseException | None = None
        self.done, self.stop = threading.Event(), threading.Event()

    def settled(self) -> int:
        """Expected ids with a final outcome."""
        return len(set().union(*(self.seen[k] for k in self.final)))

    def run(self) -> None:
        try:
            while not self.stop.is_set() and self.settled() < len(self.expected):
                batches = self.consumer.poll(timeout_ms=100)
                now = time.perf_counter()
                for tp, records in batches.items():
                    for record in records:
                        hit = rpt.classify(tp.topic, json.loads(record.value))
                        if hit is not None and hit[1] in self.expected:
                            self.seen[hit[0]].setdefault(hit[1], now)
        except Exception as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.done.set()


def watch(consumer: KafkaConsumer, producer: KafkaProducer, topics: Sequence[str],
           final: tuple[str, ...], records: Sequence[Record], timeout: float,
           into: TopicSpec = INBOUND) -> tuple[Watcher, dict[str, float], float]:
    """Produce the records to ``into`` and watch until each settles or the timeout passes."""
    start_at_end(consumer, partitions(consumer, *topics))
    watcher = Watcher(consumer, frozenset(r[0] for r in records), final)
    watcher.start()
    try:
        sent, produce_s = produce(producer, into.name, records)
        deadline = time.perf_counter() + timeout
        while (left := deadline - time.perf_counter()) > 0 and not watcher.done.wait(min(5.0, left)):
            log.info("  %s", ", ".join(f"{k} {len(v)}/{len(records)}" for k, v in watcher.seen.items()
                                      if v or k in final))
    finally:
        watcher.stop.set()
        watcher.join()
    if watcher.error is not None:
        raise watcher.error
    return watcher, sent, produce_s

