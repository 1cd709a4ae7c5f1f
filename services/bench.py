"""`complaints bench`: drive complaints through the running stack and print figures.

One client (kafka-python), in this order: (1) broker baseline, N records of the same
size produced and flushed to ``complaints.bench-baseline``, then consumed back; (2) the
pipeline, N ``inbound.received`` events to ``complaints.inbound`` while a watcher thread
reads ``complaints.routed`` and ``complaints.notifications`` (all partitions, from the
end offsets taken before producing, no group) and matches them by ``correlationid``.
Latencies are ``perf_counter`` spans in this process, from the send call to the poll
that returned the event. Nothing personal is printed.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from schemas.events import Channel, InboundMessage, InboundReceived
from schemas.topics import INBOUND, NOTIFICATIONS, PARTITIONS, ROUTED, TopicSpec
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings, load_settings

log = logging.getLogger(__name__)

BASELINE = TopicSpec("complaints.bench-baseline", PARTITIONS, "none", InboundReceived,
                     "Raw broker baseline of `complaints bench`; bench records only.")
CHANNELS = (Channel.web_form, Channel.phone, Channel.email, Channel.store)
TEXTS = (
    "The kettle I bought last week is broken and stopped working after two days.",
    "Your delivery was late again and nobody answered the hotline.",
    "I was charged twice for the same order, please refund the extra fee.",
    "The staff at the counter were rude and ignored my questions.",
    "收到的商品有质量问题，屏幕有裂纹，希望尽快处理。",
)
Record = tuple[str, bytes, bytes]  # (event id, key, value)


class BenchError(RuntimeError):
    """The run cannot go on: topics missing, records not acknowledged or not read back."""


# ---- pure figures ------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def rate(count: int, seconds: float) -> float:
    """Items per second; NaN when no time has passed."""
    return count / seconds if seconds > 0 else math.nan


def ratio(part: float, whole: float) -> float:
    """part / whole; NaN when whole is not a positive number."""
    return part / whole if whole > 0 else math.nan


def latencies_ms(sent: Mapping[str, float], seen: Mapping[str, float]) -> list[float]:
    """Milliseconds from send to sight for every id seen that was also sent."""
    return [(at - sent[key]) * 1000 for key, at in seen.items() if key in sent]


@dataclass(frozen=True)
class Figures:
    """What one run measured; rates in records (or complaints) per second."""

    count: int
    run_id: str
    partitions: int
    base_produce: float
    base_consume: float
    inbound_produce: float
    end_to_end: float  # first inbound sent -> last acknowledgement seen
    seconds: float  # that span
    routed_ms: Sequence[float]
    acked_ms: Sequence[float]


def _num(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _pcts(values: Sequence[float]) -> str:
    return "   ".join(f"p{q} {_num(percentile(values, q)):>8}" for q in (50, 95, 99))


def format_report(f: Figures) -> str:
    """The pasteable text block."""
    rows = [
        (f"broker baseline (kafka-python, 1 topic, {f.partitions} partitions):",
         f"produce {_num(f.base_produce):>9} rec/s   consume {_num(f.base_consume):>9} rec/s"),
        ("pipeline inbound produce:", f"        {_num(f.inbound_produce):>9} rec/s"),
        ("pipeline end-to-end (inbound -> ack sent):",
         f"        {_num(f.end_to_end):>9} complaints/s over {_num(f.seconds, 2)} s"),
        ("latency inbound -> routed (ms):", _pcts(f.routed_ms)),
        ("latency inbound -> acknowledged (ms):", _pcts(f.acked_ms)),
        ("ratio end-to-end / baseline:",
         f"produce {_num(ratio(f.end_to_end, f.base_produce), 3):>9}         "
         f"consume {_num(ratio(f.end_to_end, f.base_consume), 3):>9}"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    head = (f"complaints bench: N={f.count} (run id {f.run_id}; "
            "order: broker baseline, then pipeline)")
    return "\n".join([head, *(f"  {label:<{width}}{value}" for label, value in rows)])


# ---- the run --------------------------------------------------------------------


def inbound_records(run_id: str, count: int) -> list[Record]:
    """N inbound events of synthetic complaints, rotating channels and texts."""
    out: list[Record] = []
    for i in range(count):
        message_id = f"bench-{run_id}-{i}"
        payload = {"subject": f"bench complaint {i}", "description": TEXTS[i % len(TEXTS)],
                   "email": f"bench-{i}@example.com", "message_id": message_id}
        event = InboundReceived.new(
            InboundMessage(channel=CHANNELS[i % len(CHANNELS)], message_id=message_id,
                           payload=payload),
            source="bench", time=datetime.now(UTC), subject=None)
        out.append((event.id, message_id.encode(), event.to_bytes()))
    return out


def _produce(producer: KafkaProducer, topic: str, records: Sequence[Record]
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


def _partitions(consumer: KafkaConsumer, *topics: str) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))]


def _start_at_end(consumer: KafkaConsumer, tps: list[TopicPartition]) -> None:
    consumer.assign(tps)
    for tp, offset in consumer.end_offsets(tps).items():
        consumer.seek(tp, offset)


def _baseline(producer: KafkaProducer, consumer: KafkaConsumer, records: Sequence[Record],
              timeout: float) -> tuple[float, float, int]:
    """Produce then consume N records through one topic: (produce/s, consume/s, partitions)."""
    tps = _partitions(consumer, BASELINE.name)
    _start_at_end(consumer, tps)
    _, produce_s = _produce(producer, BASELINE.name, records)
    got, start = 0, time.perf_counter()
    last, deadline = start, start + timeout
    while got < len(records) and time.perf_counter() < deadline:
        n = sum(len(batch) for batch in consumer.poll(timeout_ms=200).values())
        if n:
            got, last = got + n, time.perf_counter()
    if got < len(records):
        raise BenchError(f"baseline: consumed {got} of {len(records)} within {timeout} s")
    return rate(len(records), produce_s), rate(got, last - start), len(tps)


class _Watcher(threading.Thread):
    """Polls routed and notifications; notes when each expected correlation id shows up."""

    def __init__(self, consumer: KafkaConsumer, expected: frozenset[str]) -> None:
        super().__init__(name="bench-watcher", daemon=True)
        self.consumer, self.expected = consumer, expected
        self.routed: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.failed_acks = 0
        self.error: BaseException | None = None
        self.done, self.stop = threading.Event(), threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set() and len(self.acked) < len(self.expected):
                batches = self.consumer.poll(timeout_ms=100)
                now = time.perf_counter()
                for tp, records in batches.items():
                    for record in records:
                        self._see(tp.topic, record.value, now)
        except Exception as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.done.set()

    def _see(self, topic: str, value: bytes, now: float) -> None:
        event = json.loads(value)
        cid = event.get("correlationid")
        if cid not in self.expected:
            return
        data = event.get("data") or {}
        if topic == ROUTED.name:
            self.routed.setdefault(cid, now)
        elif data.get("kind") == "acknowledgement":
            if data.get("status") == "sent":
                self.acked.setdefault(cid, now)
            else:
                self.failed_acks += 1


def bench(*, count: int, timeout: float) -> int:
    """Run the baseline, then the pipeline; print the figures. 0 complete, 1 timed out, 2 error."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    if count < 1:
        print("complaints bench: --count must be at least 1")
        return 2
    try:
        return _run(load_settings(CommonSettings).bootstrap_list(), count, timeout)
    except (KafkaError, BenchError) as exc:
        print(f"complaints bench: {exc}")
        return 2


def _run(bootstrap: list[str], count: int, timeout: float) -> int:
    run_id = uuid.uuid4().hex[:8]
    ensure_topics(bootstrap, (BASELINE,))
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             acks="all", linger_ms=5)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        pipeline_tps = _partitions(consumer, ROUTED.name, NOTIFICATIONS.name)
        if not _partitions(consumer, INBOUND.name) or not pipeline_tps:
            raise BenchError("pipeline topics missing; run `complaints topics`, start the services")
        log.info("bench %s: baseline, %d records", run_id, count)
        base_p, base_c, parts = _baseline(
            producer, consumer, inbound_records(f"{run_id}-base", count), timeout)
        records = inbound_records(run_id, count)
        _start_at_end(consumer, pipeline_tps)
        watcher = _Watcher(consumer, frozenset(r[0] for r in records))
        watcher.start()
        try:
            log.info("bench %s: pipeline, %d complaints", run_id, count)
            sent, produce_s = _produce(producer, INBOUND.name, records)
            deadline = time.perf_counter() + timeout
            while (left := deadline - time.perf_counter()) > 0 and not watcher.done.wait(
                    min(5.0, left)):
                log.info("  routed %d/%d, acknowledged %d/%d", len(watcher.routed), count,
                         len(watcher.acked), count)
        finally:
            watcher.stop.set()
            watcher.join()
    finally:
        producer.close()
        consumer.close()
    if watcher.error is not None:
        raise watcher.error
    if len(watcher.acked) < count:
        print(f"complaints bench: N={count} (run id {run_id}) INCOMPLETE after {timeout:g} s: "
              f"routed {len(watcher.routed)}/{count}, acknowledged {len(watcher.acked)}/{count} "
              f"({count - len(watcher.acked)} missing, {watcher.failed_acks} failed)")
        return 1
    seconds = max(watcher.acked.values()) - min(sent.values())
    print(format_report(Figures(
        count=count, run_id=run_id, partitions=parts, base_produce=base_p, base_consume=base_c,
        inbound_produce=rate(count, produce_s), end_to_end=rate(count, seconds), seconds=seconds,
        routed_ms=latencies_ms(sent, watcher.routed), acked_ms=latencies_ms(sent, watcher.acked),
    )))
    return 0
