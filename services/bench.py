"""`complaints bench`: drive complaints through the running stack and print figures.

Every run first takes a raw broker baseline with one client (kafka-python): N records of
the same size produced and flushed to ``complaints.bench-baseline``, then consumed back.
Then one stage (``--stage``):

* ``pipeline`` (Kafka only): N ``inbound.received`` events to ``complaints.inbound`` while a
  watcher thread reads ``complaints.routed`` and ``complaints.notifications`` and matches them
  by ``correlationid``; figures up to the acknowledgement sent.
* ``intake --via kafka``: the same N inbound events; the watcher reads
  ``complaints.registered`` (and ``complaints.deadletter``, to stop early on failures);
  registrations/s = N / (last registration seen - first inbound sent).
* ``router``: N ``complaint.registered`` events straight to ``complaints.registered``
  (synthetic complaints, each of its own customer, rotating texts); the watcher reads
  ``complaints.routed``; decisions/s = N / (last decision seen - first registration sent).
  Run it with the router alone, or say which other services share the cores.
* ``notifier``: the same N registered events, each with an e-mail contact; the watcher
  reads ``complaints.notifications`` until every acknowledgement is recorded sent;
  notifications/s = N / (last sent - first registration produced). Run it with the
  notifier alone (its transports as configured: the file outbox by default).
* ``sla``: N routed complaints straight to ``complaints.routed``, received an hour ago give
  or take, so that their acknowledge and respond deadlines (1 h, general) fall due over
  the next ``SLA_SPREAD`` seconds, after ``SLA_LEAD`` seconds in which the monitor takes
  the burst of started and warning alerts. The watcher reads ``complaints.sla``; lateness
  is each breach's emission time (``observed_at``) and its arrival here, minus its
  deadline. Needs the monitor at scale 1 (``complaints up`` without ``--sla-scale``).
* ``intake --via http``: N signed ``web_form`` POSTs over ``--concurrency`` keep-alive
  connections (one per thread). A 202 means the registration is on the broker (intake waits
  for the ack), so registrations/s = 202 answers / wall time of the POST phase.

Watchers read all partitions from the end offsets taken before producing (no group).
Latencies are ``perf_counter`` spans in this process. Nothing personal is printed.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from schemas.events import (
    Channel,
    Complaint,
    ComplaintRegistered,
    ComplaintRouted,
    Contact,
    InboundMessage,
    InboundReceived,
    Level,
    RoutingDecision,
    Severity,
)
from schemas.topics import DEADLETTER, INBOUND, NOTIFICATIONS, PARTITIONS, REGISTERED, ROUTED, SLA, TopicSpec
from services import bench_report as rpt
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings, load_settings
from services.intake import auth
from services.signing import load_secrets

log = logging.getLogger(__name__)

BASELINE = TopicSpec("complaints.bench-baseline", PARTITIONS, "none", InboundReceived,
                     "Raw broker baseline of `complaints bench`; bench records only.")
CHANNELS = (Channel.web_form, Channel.phone, Channel.email, Channel.store)
SLA_LEAD, SLA_SPREAD = 10.0, 20.0  # seconds before the first deadline; over how long they fall
SLA_BREACHED = ("acknowledge", "respond")  # the milestones that breach within the run
HTTP_TIMEOUT = 30.0  # seconds one POST may take before it counts as failed
Record = tuple[str, bytes, bytes]  # (event id, key, value)


class BenchError(RuntimeError):
    """The run cannot go on: topics missing, records not acknowledged or not read back."""


class Answer(NamedTuple):
    """One POST: HTTP status (0: no answer), perf_counter start and end, what went wrong."""

    status: int
    started: float
    ended: float
    detail: str


# ---- the load (Kafka) ---------------------------------------------------------


def inbound_records(run_id: str, count: int) -> list[Record]:
    """N inbound events of synthetic complaints, rotating channels (own formats) and texts."""
    out: list[Record] = []
    for i in range(count):
        message_id = f"bench-{run_id}-{i}"
        channel = CHANNELS[i % len(CHANNELS)]
        payload = rpt.channel_payload(channel.value, i, message_id)
        event = InboundReceived.new(
            InboundMessage(channel=channel, message_id=message_id, payload=payload),
            source="bench", time=datetime.now(UTC), subject=None)
        out.append((event.id, message_id.encode(), event.to_bytes()))
    return out


def registered_records(run_id: str, count: int, *, contact: bool = False) -> list[Record]:
    """N registered complaints for the router (or, with an e-mail contact, notifier) stage."""
    out: list[Record] = []
    now = datetime.now(UTC)
    for i in range(count):
        text = rpt.TEXTS[i % len(rpt.TEXTS)]
        cid = f"B{run_id}-{i:07d}"
        complaint = Complaint(
            complaint_id=cid, channel=CHANNELS[i % len(CHANNELS)], received_at=now,
            source_message_id=f"bench-{run_id}-{i}",
            customer=Contact(email=f"bench-{i}@example.com", language="en") if contact else Contact(),
            customer_key=f"bench-{run_id}-{i}", first_contact="bench-desk",
            subject=f"bench complaint {i}", description=text)
        event = ComplaintRegistered.new(complaint, source="bench", time=now, subject=cid)
        out.append((event.id, cid.encode(), event.to_bytes()))
    return out


def routed_records(run_id: str, count: int, now: datetime) -> list[Record]:
    """N routed complaints whose 1-hour deadlines fall due between now + lead and + spread."""
    out: list[Record] = []
    for i in range(count):
        cid = f"L{run_id}-{i:07d}"
        due = now + timedelta(seconds=SLA_LEAD + SLA_SPREAD * i / max(count - 1, 1))
        decision = RoutingDecision(
            complaint_id=cid, received_at=due - timedelta(hours=1), code="PQ-01",
            severity=Severity.general, department="quality", level=Level.L1,
            handler="quality-l1-01", first_contact_owner="bench-desk", reasons=["bench"])
        event = ComplaintRouted.new(decision, source="bench", time=now, subject=cid)
        out.append((event.id, cid.encode(), event.to_bytes()))
    return out


def _sla_run(bootstrap: list[str], count: int, timeout: float, base: tuple[float, float, int],
             run_id: str, producer: KafkaProducer, consumer: KafkaConsumer) -> int:
    _start_at_end(consumer, _partitions(consumer, SLA.name))
    now = datetime.now(UTC)
    records = routed_records(run_id, count, now)
    prefix = f"L{run_id}-"
    _, _produce_s = _produce(producer, ROUTED.name, records)
    start = time.perf_counter()
    alerts: set[str] = set()
    emitted: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}
    expected = count * len(SLA_BREACHED)
    deadline = start + timeout + SLA_LEAD + SLA_SPREAD
    last = start
    while len(seen) < expected and time.perf_counter() < deadline:
        for batch in consumer.poll(timeout_ms=100).values():
            arrived = time.time()
            for rec in batch:
                event = json.loads(rec.value)
                if not str(event.get("subject", "")).startswith(prefix):
                    continue
                alerts.add(event["id"])
                data = event["data"]
                if data["outcome"] == "breached" and data["milestone"] in SLA_BREACHED:
                    key = (event["subject"], data["milestone"])
                    due_at = datetime.fromisoformat(data["due_at"]).timestamp()
                    emitted.setdefault(key, (datetime.fromisoformat(data["observed_at"]).timestamp()
                                             - due_at) * 1000)
                    seen.setdefault(key, (arrived - due_at) * 1000)
                    last = time.perf_counter()
    print(rpt.format_sla_report(rpt.SlaFigures(
        count=count, run_id=run_id, partitions=base[2], base_produce=base[0], base_consume=base[1],
        alerts=len(alerts), breaches=len(seen), expected=expected, seconds=last - start,
        emitted_ms=list(emitted.values()), seen_ms=list(seen.values()), spread=SLA_SPREAD)))
    return 0 if len(seen) == expected else 1


# ---- Kafka ----------------------------------------------------------------------


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
    return [TopicPartition(t, p) for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())]


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


class _Watcher(threading.Thread):
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


def _watch(consumer: KafkaConsumer, producer: KafkaProducer, topics: Sequence[str],
           final: tuple[str, ...], records: Sequence[Record], timeout: float,
           into: TopicSpec = INBOUND) -> tuple[_Watcher, dict[str, float], float]:
    """Produce the records to ``into`` and watch until each settles or the timeout passes."""
    _start_at_end(consumer, _partitions(consumer, *topics))
    watcher = _Watcher(consumer, frozenset(r[0] for r in records), final)
    watcher.start()
    try:
        sent, produce_s = _produce(producer, into.name, records)
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


# ---- HTTP -----------------------------------------------------------------------


def _post_all(url: str, bodies: Sequence[bytes], secret: bytes | None, concurrency: int
              ) -> list[Answer]:
    """POST every body from ``concurrency`` threads, one keep-alive connection each."""
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    work: Iterator[bytes] = iter(bodies)
    lock = threading.Lock()
    answers: list[Answer] = []

    def worker() -> None:
        conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=HTTP_TIMEOUT)
        mine: list[Answer] = []
        try:
            while True:
                with lock:
                    body = next(work, None)
                if body is None:
                    break
                headers = {"Content-Type": "application/json"}
                if secret is not None:
                    headers.update(auth.sign(secret, body, now=time.time()))
                start = time.perf_counter()
                try:
                    conn.request("POST", parts.path, body=body, headers=headers)
                    reply = conn.getresponse()
                    raw = reply.read()
                    mine.append(Answer(reply.status, start, time.perf_counter(),
                                       rpt.answer_detail(reply.status, raw)))
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()  # the next request opens a fresh connection
                    mine.append(Answer(0, start, time.perf_counter(), type(exc).__name__))
        finally:
            conn.close()
            with lock:
                answers.extend(mine)

    threads = [threading.Thread(target=worker, name=f"bench-http-{i}", daemon=True)
               for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def _healthy(base_url: str) -> None:
    parts = urlsplit(base_url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        conn.request("GET", parts.path + "/healthz")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"intake does not answer at {base_url}: {exc}") from None
    finally:
        conn.close()
    if status != 200:
        raise BenchError(f"intake at {base_url} is not healthy: /healthz answered {status}")


# ---- the run --------------------------------------------------------------------


def bench(*, count: int, timeout: float, stage: str = "pipeline", via: str = "kafka",
          concurrency: int = 16, intake_url: str | None = None, intake_processes: int = 1,
          redis_footprint: bool = False) -> int:
    """Run the baseline, then the stage; print the figures. 0 complete, 1 incomplete, 2 error."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    if count < 1 or concurrency < 1 or intake_processes < 1:
        print("complaints bench: --count, --concurrency and --intake-processes must be at least 1")
        return 2
    if stage in ("pipeline", "router", "sla", "notifier") and via != "kafka":
        print(f"complaints bench: --stage {stage} runs over Kafka only; over HTTP, measure "
              "`--stage intake --via http` (its 202 is the registration)")
        return 2
    try:
        settings = load_settings(CommonSettings)
        url = rpt.intake_base_url(intake_url, os.environ) + "/v1/inbound/web_form"
        secret = auth.secret_for("web_form", load_secrets(settings.data_dir))
    except ValueError as exc:
        print(f"complaints bench: {exc}")
        return 2
    try:
        code = _run(settings.bootstrap_list(), count, timeout, stage, via, concurrency, url,
                    secret, intake_processes)
        if redis_footprint and code == 0:
            print(rpt.format_footprint(footprint(settings.redis_url, settings.redis_prefix), count,
                                       settings.redis_prefix))
        return code
    except (KafkaError, BenchError) as exc:
        print(f"complaints bench: {exc}")
        return 2


def footprint(url: str, prefix: str) -> dict[str, tuple[int, int]]:
    """Keys and bytes (Redis MEMORY USAGE, all samples) under ``prefix``, by the key's first part."""
    import redis

    client = redis.Redis.from_url(url)
    out: dict[str, tuple[int, int]] = {}
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.memory_usage(key, samples=0)
            for key, size in zip(chunk, pipe.execute(), strict=True):
                family = key.decode()[len(prefix):].split(":", 1)[0]
                n, total = out.get(family, (0, 0))
                out[family] = (n + 1, total + int(size or 0))
    finally:
        client.close()
    return out


def _run(bootstrap: list[str], count: int, timeout: float, stage: str, via: str, concurrency: int,
         url: str, secret: bytes | None, processes: int) -> int:
    run_id = uuid.uuid4().hex[:8]
    ensure_topics(bootstrap, (BASELINE,))
    producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             acks="all", linger_ms=5)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="complaints-bench",
                             group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        watched = {"pipeline": (ROUTED.name, NOTIFICATIONS.name), "router": (ROUTED.name,),
                   "intake": (REGISTERED.name, DEADLETTER.name), "sla": (SLA.name,),
                   "notifier": (NOTIFICATIONS.name,)}[stage]
        if not _partitions(consumer, INBOUND.name) or not _partitions(consumer, *watched):
            raise BenchError("complaint topics missing; run `complaints topics`, start the services")
        if via == "http":
            _healthy(url.rsplit("/v1/", 1)[0])
            if secret is None:
                log.warning("no signing secret for web_form (INTAKE_SIGNING_SECRETS or the file "
                            "`complaints up` writes): posting unsigned")
        log.info("bench %s: baseline, %d records", run_id, count)
        base = _baseline(producer, consumer, inbound_records(f"{run_id}-base", count), timeout)
        log.info("bench %s: %s via %s, %d complaints", run_id, stage, via, count)
        if stage == "sla":
            return _sla_run(bootstrap, count, timeout, base, run_id, producer, consumer)
        if via == "http":
            answers = _post_all(url, rpt.web_form_bodies(run_id, count), secret, concurrency)
            return _http_report(run_id, count, base, answers, concurrency, processes)
        # an SMS acknowledgement in the quiet hours is deferred: settled, not timed
        final = {"pipeline": ("acked", "ack_deferred"), "router": ("routed",),
                 "notifier": ("acked", "ack_failed"),
                 "intake": ("registered", "dead")}[stage]
        load, into = ((registered_records(run_id, count, contact=stage == "notifier"), REGISTERED)
                      if stage in ("router", "notifier") else (inbound_records(run_id, count), INBOUND))
        watcher, sent, produce_s = _watch(consumer, producer, watched, final, load, timeout, into)
    finally:
        producer.close()
        consumer.close()
    seen = watcher.seen
    if watcher.settled() < count:
        print(f"complaints bench: stage={stage} via=kafka N={count} (run id {run_id}) INCOMPLETE "
              f"after {timeout:g} s: " + ", ".join(f"{k} {len(v)}/{count}" for k, v in seen.items()
                                                   if v or k in final))
        return 1
    done = seen[{"pipeline": "acked", "router": "routed", "intake": "registered",
                 "notifier": "acked"}[stage]]
    seconds = max(done.values(), default=math.nan) - min(sent.values())
    if stage == "pipeline":
        print(rpt.format_report(rpt.Figures(
            count=count, run_id=run_id, partitions=base[2], base_produce=base[0],
            base_consume=base[1], inbound_produce=rpt.rate(count, produce_s),
            end_to_end=rpt.rate(count, seconds), seconds=seconds,
            routed_ms=rpt.latencies_ms(sent, seen["routed"]), acked_ms=rpt.latencies_ms(sent, done))))
        return 0
    print(rpt.format_intake_report(rpt.IntakeFigures(
        count=count, run_id=run_id, via="kafka", partitions=base[2], base_produce=base[0],
        base_consume=base[1], input_rate=rpt.rate(count, produce_s), registered=len(done),
        seconds=seconds, latency_ms=rpt.latencies_ms(sent, done), failed=len(seen["dead"]),
        failure_note="dead-lettered" if seen["dead"] else "", processes=processes, stage=stage)))
    return 1 if seen["dead"] else 0


def _http_report(run_id: str, count: int, base: tuple[float, float, int], answers: list[Answer],
                 concurrency: int, processes: int) -> int:
    ok = [a for a in answers if a.status == 202 and not a.detail]
    failures = [(a.status, a.detail) for a in answers if a.status != 202 or a.detail]
    seconds = max(a.ended for a in answers) - min(a.started for a in answers)
    print(rpt.format_intake_report(rpt.IntakeFigures(
        count=count, run_id=run_id, via="http", partitions=base[2], base_produce=base[0],
        base_consume=base[1], input_rate=rpt.rate(len(answers), seconds), registered=len(ok),
        seconds=seconds, latency_ms=[(a.ended - a.started) * 1000 for a in ok],
        failed=len(failures), failure_note=rpt.failure_kinds(failures), concurrency=concurrency,
        processes=processes)))
    return 1 if failures else 0
