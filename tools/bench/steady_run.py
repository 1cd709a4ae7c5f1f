"""The pipeline's steady mode, `complaints bench --rate R --duration S [--via kafka|http]`: an
open-loop load at a fixed rate, figures per hop, the backlog left and the CPU of every process.

Order: the stack's processes are found (tools/bench/procs.py) and their idle CPU sampled over
a few seconds; the broker baselines run as in the burst; a watcher reads complaints.registered,
.routed, .notifications and .deadletter from their end offsets; then complaint i is sent at
start + i / R: over Kafka an inbound event produced by one thread (the client buffers, nothing
waits for the broker's answer), over HTTP a signed web_form POST by whichever of
``--concurrency`` sender threads is free (a slow answer holds one sender, not the schedule).
CPU is read at the window's start and end. Then the bench waits, up to ``--timeout`` seconds,
for the complaints still under way to settle (acknowledgement sent, deferred or failed).

Keys: over Kafka the inbound event's id (the loop's correlation id); over HTTP the complaint
id of the 202 (the events' subject). Times are this process's perf_counter.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from kafka import KafkaConsumer, KafkaProducer

from schemas.topics import DEADLETTER, INBOUND, NOTIFICATIONS, REGISTERED, ROUTED
from services.common.kafka import ensure_topics
from services.common.transport import (
    from_environment,
    kafka_python_kwargs,
    kafka_python_producer_kwargs,
)
from tools.bench import BenchError, procs
from tools.bench import report as rpt
from tools.bench import steady as st
from tools.bench.kafka import (
    BASELINE,
    WATCH_FETCH_WAIT_MS,
    aio_baseline,
    baseline,
    partitions,
    start_at_end,
)
from tools.bench.load import Record, inbound_records, web_form_bodies
from tools.bench.web import Poster, check_healthy

log = logging.getLogger(__name__)

WATCHED = (REGISTERED.name, ROUTED.name, NOTIFICATIONS.name, DEADLETTER.name)
KINDS = ("registered", "routed", "acked", "ack_deferred", "ack_failed", "dead")
IDLE_SECONDS = 3.0
BASELINE_COUNT = 2000  # the burst's default N: the baselines compare across modes


class SteadyWatcher(threading.Thread):
    """Notes the first sighting of each complaint per kind until told to stop."""

    def __init__(self, consumer: KafkaConsumer, *, by_subject: bool,
                 keys: frozenset[str] | None) -> None:
        super().__init__(name="bench-steady-watcher", daemon=True)
        self.consumer, self.by_subject, self.keys = consumer, by_subject, keys
        self.seen: dict[str, dict[str, float]] = {k: {} for k in KINDS}
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self.lock:
            return {k: dict(v) for k, v in self.seen.items()}

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                batches = self.consumer.poll(timeout_ms=100)
                now = time.perf_counter()
                with self.lock:
                    for tp, records in batches.items():
                        for record in records:
                            self._note(tp.topic, record.value, now)
        except Exception as exc:  # reported by the main thread
            self.error = exc

    def _note(self, topic: str, value: bytes, now: float) -> None:
        try:
            event = json.loads(value)
        except ValueError:
            return
        hit = rpt.classify(topic, event)
        if hit is None:
            return
        kind, key = hit
        if self.by_subject and kind != "dead":
            key = str(event.get("subject") or "")
        if self.keys is None or key in self.keys:
            self.seen[kind].setdefault(key, now)


def send_kafka(producer: KafkaProducer, records: Sequence[Record], offsets: Sequence[float],
               t0: float) -> list[st.Send]:
    """Produce record i at t0 + offsets[i] (never waiting for the broker), then flush."""
    pending = []
    for (event_id, key, value), offset in zip(records, offsets, strict=True):
        due = t0 + offset
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)  # the schedule, not a wait on a result
        sent = time.perf_counter()
        pending.append((event_id, due, sent, producer.send(INBOUND.name, key=key, value=value)))
    producer.flush()
    return [st.Send(eid, due, sent, ok=not fut.failed(),
                    detail=type(fut.exception).__name__ if fut.failed() else "")
            for eid, due, sent, fut in pending]


def send_http(url: str, secret: tuple[str, bytes] | None, bodies: Sequence[bytes],
              offsets: Sequence[float], t0: float, concurrency: int) -> list[st.Send]:
    """POST body i at t0 + offsets[i] from whichever of ``concurrency`` threads is free."""
    counter, lock = itertools.count(), threading.Lock()
    out: list[st.Send | None] = [None] * len(bodies)

    def worker() -> None:
        poster = Poster(url, secret)
        try:
            while True:
                with lock:
                    i = next(counter)
                if i >= len(bodies):
                    return
                due = t0 + offsets[i]
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                sent = time.perf_counter()
                status, raw, error = poster.post(bodies[i])
                answered = time.perf_counter()
                detail = error or rpt.answer_detail(status, raw)
                cid = _complaint_id(raw) if status == 202 else ""
                ok = status == 202 and not detail and bool(cid)
                out[i] = st.Send(cid, due, sent, answered, ok,
                                 "" if ok else f"{status} ({detail or 'no complaint id'})")
        finally:
            poster.close()

    threads = [threading.Thread(target=worker, name=f"bench-steady-http-{i}", daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [s for s in out if s is not None]


def _complaint_id(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    return str(body.get("complaint_id") or "") if isinstance(body, dict) else ""


class _Sender(threading.Thread):
    """Runs one of the senders in a thread of its own; keeps what it returned or raised."""

    def __init__(self, target: Callable[..., list[st.Send]], *args: object) -> None:
        super().__init__(name="bench-steady-sender", daemon=True)
        self.fn, self.args = target, args
        self.result: list[st.Send] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except Exception as exc:  # reported by the main thread
            self.error = exc


def steady_bench(*, bootstrap: list[str], rate: float, duration: float, via: str, url: str,
                 secret: tuple[str, bytes] | None, concurrency: int, timeout: float,
                 ports: dict[str, int | None], redis_url: str, database_url: str | None,
                 baseline_count: int = BASELINE_COUNT, idle_seconds: float = IDLE_SECONDS) -> int:
    """Run the steady mode and print its figures; 0 when everything settled, 1 otherwise."""
    run_id = uuid.uuid4().hex[:8]
    offsets = st.schedule(rate, duration)
    members = procs.find_stack(ports, broker=",".join(bootstrap), redis_url=redis_url,
                               database_url=database_url)
    for m in members:
        log.info("  %-12s %s %s", m.name, ",".join(map(str, m.pids)) or "-", m.kind or m.note)
    log.info("bench %s: idle CPU of the stack over %.0f s", run_id, idle_seconds)
    idle0 = procs.sample(members, time.perf_counter())
    time.sleep(idle_seconds)
    idle1 = procs.sample(members, time.perf_counter())
    ensure_topics(bootstrap, (BASELINE,))
    transport = from_environment()
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             acks="all", linger_ms=5, **kafka_python_producer_kwargs(transport))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             group_id=None, enable_auto_commit=False, fetch_max_wait_ms=WATCH_FETCH_WAIT_MS,
                             **kafka_python_kwargs(transport))
    watcher: SteadyWatcher | None = None
    try:
        if not partitions(consumer, INBOUND.name) or not partitions(consumer, *WATCHED):
            raise BenchError("complaint topics missing; run `complaints topics`, start the services")
        if via == "http":
            check_healthy(url.rsplit("/v1/", 1)[0])
        log.info("bench %s: baseline with kafka-python, %d records", run_id, baseline_count)
        base = baseline(producer, consumer, inbound_records(f"{run_id}-base", baseline_count), timeout)
        log.info("bench %s: baseline with aiokafka, %d records", run_id, baseline_count)
        aio = aio_baseline(bootstrap, inbound_records(f"{run_id}-aiok", baseline_count), timeout,
                           transport=transport, linger_ms=5)
        records = inbound_records(run_id, len(offsets)) if via == "kafka" else []
        bodies = web_form_bodies(run_id, len(offsets)) if via == "http" else []
        start_at_end(consumer, partitions(consumer, *WATCHED))
        watcher = SteadyWatcher(consumer, by_subject=via == "http",
                                keys=frozenset(r[0] for r in records) if via == "kafka" else None)
        watcher.start()
        producer.partitions_for(INBOUND.name)  # the metadata now, not at the first send
        log.info("bench %s: steady %g complaints/s for %g s via %s (%d)", run_id, rate, duration,
                 via, len(offsets))
        t0 = time.perf_counter() + 0.2
        sender = (_Sender(send_kafka, producer, records, offsets, t0) if via == "kafka"
                  else _Sender(send_http, url, secret, bodies, offsets, t0, concurrency))
        sender.start()
        time.sleep(max(0.0, t0 - time.perf_counter()))
        load0 = procs.sample(members, time.perf_counter())
        end = t0 + max(duration, offsets[-1])
        while (left := end - time.perf_counter()) > 0:
            time.sleep(min(left, 5.0))
            _progress(watcher, len(offsets))
        load1 = procs.sample(members, time.perf_counter())
        sender.join()
        if sender.error is not None:
            raise sender.error
        sends = sender.result
        _drain(watcher, sends, end, timeout)
        watcher.stop.set()
        watcher.join()
        if watcher.error is not None:
            raise watcher.error
        seen = watcher.snapshot()
    finally:
        if watcher is not None and watcher.is_alive():
            watcher.stop.set()
            watcher.join()
        producer.close()
        consumer.close()
    rows = st.cpu_rows([(m.name, m.pids, m.kind, m.note) for m in members]
                       + [(procs.BENCH, (os.getpid(),), "", "")],
                       (idle0.ticks, idle1.ticks), (load0.ticks, load1.ticks), procs.clock_ticks())
    figures = st.SteadyFigures(
        run_id=run_id, via=via, rate=rate, duration=duration, scheduled=len(offsets), sends=sends,
        seen=seen, start=load0.at, end=load1.at, cap=timeout, partitions=base[2],
        base_produce=base[0], base_consume=base[1], aio_produce=aio[0], aio_consume=aio[1],
        cpu=rows, idle_seconds=idle1.at - idle0.at, concurrency=concurrency)
    print(st.format_steady(figures))
    done = st.backlog(sends, seen, math.inf) == 0 and all(s.ok for s in sends)
    return 0 if done and len(sends) == len(offsets) else 1


def _progress(watcher: SteadyWatcher, scheduled: int) -> None:
    seen = watcher.snapshot()
    log.info("  of %d: %s", scheduled, ", ".join(f"{k} {len(v)}" for k, v in seen.items() if v))


def _drain(watcher: SteadyWatcher, sends: Sequence[st.Send], end: float, cap: float) -> None:
    """Until every accepted complaint settled, or ``cap`` seconds after the window's end."""
    last_log = time.perf_counter()
    while (left := st.backlog(sends, watcher.snapshot(), math.inf)) and time.perf_counter() < end + cap:
        if watcher.error is not None:
            return
        if time.perf_counter() - last_log >= 5:
            log.info("  draining: %d not settled", left)
            last_log = time.perf_counter()
        time.sleep(0.2)
