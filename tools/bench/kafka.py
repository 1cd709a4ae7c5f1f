"""Kafka for `complaints bench`: produce and flush, read from the end offsets, the raw broker
baseline, and the watcher that notes when each expected event shows up."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.events import InboundReceived
from schemas.topics import INBOUND, PARTITIONS, TopicSpec
from tools.bench import BenchError
from tools.bench import report as rpt
from tools.bench.load import Record

log = logging.getLogger(__name__)

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

