"""`complaints fuzz`: generated hostile payloads (``tools.fuzz.generate``) through a running intake.

Over HTTP each sample is POSTed, signed like an integration (``services.intake.signing``),
with its own Content-Type (or none); the answer must be 202 or a 4xx problem document, and
every 202's event must then appear on ``complaints.registered`` (or ``complaints.lifecycle``
for a survey reply). Over Kafka each sample is produced to ``complaints.inbound`` as an
``inbound.received`` record (or, for some, as bytes that are no record at all); each must
come back registered (its ``correlationid``), recorded (a survey reply) or dead-lettered by
intake with a classified reason (schema or Rejected; the boundary's catch-all for
unexpected errors counts as a failure). Finally intake's /healthz must answer 200. Only
counts and reasons are printed, never payloads.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas.topics import DEADLETTER, INBOUND, LIFECYCLE, REGISTERED
from services.common.transport import kafka_python_kwargs, kafka_python_producer_kwargs
from services.intake.signing import sign_request
from tools.fuzz.generate import CHANNELS, Sample, samples

CLASSIFIED = frozenset({"ValidationError", "Rejected", "JSONDecodeError", "UnicodeDecodeError"})
WATCHED = (REGISTERED.name, LIFECYCLE.name, DEADLETTER.name)


@dataclass
class Tally:
    """What one path did with one channel's samples."""

    channel: str
    via: str
    sent: int = 0
    registered: int = 0
    recorded: int = 0  # survey replies: a satisfaction event
    dead_lettered: Counter[str] = field(default_factory=Counter)  # by error type
    client_errors: Counter[int] = field(default_factory=Counter)  # HTTP 4xx by status
    server_errors: Counter[int] = field(default_factory=Counter)  # HTTP 5xx by status: must stay empty
    not_problems: int = 0  # 4xx answers that were no RFC 9457 problem document
    unexpected: Counter[str] = field(default_factory=Counter)  # dead letters of the catch-all
    missing: int = 0  # sent, but no outcome seen within the timeout
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)  # mutations sent

    @property
    def ok(self) -> bool:
        return not (self.server_errors or self.not_problems or self.unexpected or self.missing)

    def line(self) -> str:
        dead = sum(self.dead_lettered.values())
        four = ", ".join(f"{s}: {n}" for s, n in sorted(self.client_errors.items())) or "-"
        return (f"{self.channel:<16}{self.via:<6}{self.sent:>7}{self.registered:>11}{self.recorded:>9}"
                f"{dead:>9}{sum(self.client_errors.values()):>7}{sum(self.server_errors.values()):>5}"
                f"{sum(self.unexpected.values()):>6}{self.missing:>8}{self.seconds:>8.1f}s   4xx {four}")


HEADER = (f"{'channel':<16}{'via':<6}{'sent':>7}{'registered':>11}{'recorded':>9}{'dead-let':>9}{'4xx':>7}"
          f"{'5xx':>5}{'unexp':>6}{'missing':>8}{'elapsed':>9}")


# ---- HTTP -----------------------------------------------------------------------------------

def _post(base: urllib.parse.SplitResult, sample: Sample, secrets: Mapping[str, Any],
          conns: dict[int, http.client.HTTPConnection]) -> tuple[int, str, bytes]:
    """POST one sample on this thread's keep-alive connection: (status, content type, body)."""
    import threading

    path = f"/v1/inbound/{sample.channel}"
    headers = {"Idempotency-Key": f"fuzz-{uuid.uuid4()}"}
    if sample.content_type is not None:
        headers["Content-Type"] = sample.content_type
    headers.update(sign_request(f"{base.scheme}://{base.netloc}{path}", sample.channel, sample.body,
                                content_type=sample.content_type or "", secrets=secrets, now=time.time()))
    for attempt in range(3):
        conn = conns.get(threading.get_ident())
        if conn is None:
            conn = conns[threading.get_ident()] = http.client.HTTPConnection(
                base.hostname or "127.0.0.1", base.port or 80, timeout=60)
        try:
            conn.request("POST", path, body=sample.body, headers=headers)
            reply = conn.getresponse()
            return reply.status, reply.getheader("Content-Type", ""), reply.read()
        except (http.client.HTTPException, ConnectionError):
            conn.close()
            conns.pop(threading.get_ident(), None)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def fuzz_http(intake_url: str, channel: str, items: Sequence[Sample], *, secrets: Mapping[str, Any],
              concurrency: int = 8) -> tuple[Tally, set[str]]:
    """POST every sample; the tally and the event ids of the 202 answers (to find on the topics)."""
    tally, events = Tally(channel, "http"), set()
    base = urllib.parse.urlsplit(intake_url)
    conns: dict[int, http.client.HTTPConnection] = {}
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for sample, (status, content_type, body) in zip(
                items, pool.map(lambda s: _post(base, s, secrets, conns), items), strict=True):
            tally.sent += 1
            tally.kinds[sample.kind] += 1
            if status == 202:
                answer = json.loads(body)
                events.add(answer["event_id"])
                tally.registered += answer.get("recorded") == "registered"
                tally.recorded += answer.get("recorded") == "case_event"
            elif 400 <= status < 500:
                tally.client_errors[status] += 1
                tally.not_problems += not content_type.startswith("application/problem+json")
            else:
                tally.server_errors[status] += 1
    for conn in conns.values():
        conn.close()
    tally.seconds = time.monotonic() - started
    return tally, events


# ---- Kafka ----------------------------------------------------------------------------------

def record_of(sample: Sample, event_id: str) -> bytes:
    """The complaints.inbound record of a sample: an inbound.received envelope (or its own bytes)."""
    if sample.record is not None:
        return sample.record
    envelope = {"specversion": "1.0", "id": event_id, "type": "inbound.received", "schemaversion": 1,
                "source": "fuzz", "time": datetime.now(UTC).isoformat(), "subject": None,
                "correlationid": event_id, "causationid": None,
                "data": {"channel": sample.channel, "message_id": f"fuzz-{event_id}",
                         "payload": sample.payload}}
    # lone surrogates stay as their CESU bytes: not UTF-8, which intake must dead-letter
    return json.dumps(envelope, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def _digest(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


class Watcher:
    """Reads the outcome topics from their end offsets taken at creation (no consumer group)."""

    def __init__(self, bootstrap: Sequence[str]) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=list(bootstrap), client_id="complaints-fuzz",
                                      group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100,
                                      max_partition_fetch_bytes=8 * 1024 * 1024, **kafka_python_kwargs())
        parts = [TopicPartition(t, p) for t in WATCHED
                 for p in sorted(self.consumer.partitions_for_topic(t) or [])]
        if not parts:
            raise RuntimeError("pipeline topics missing; run `complaints topics`")
        self.consumer.assign(parts)
        for tp, offset in self.consumer.end_offsets(parts).items():
            self.consumer.seek(tp, offset)
        self.correlated: dict[str, str] = {}  # correlation / causation id -> "registered" | "recorded"
        self.event_ids: set[str] = set()  # ids of registered and lifecycle events
        self.letters: dict[str, list[tuple[str, str]]] = {}  # original's sha256 -> [(service, error type)]
        self.others: Counter[str] = Counter()  # dead letters of other services, by service

    def poll(self) -> None:
        for tp, batch in self.consumer.poll(timeout_ms=200, max_records=5000).items():
            for rec in batch:
                self._see(tp.topic, rec.value)

    def _see(self, topic: str, value: bytes) -> None:
        try:
            event = json.loads(value)
            data = event["data"]
        except (ValueError, KeyError, TypeError):
            return
        if topic == DEADLETTER.name:
            digest = data.get("original_sha256")  # the whole record's, also when `original` is cut short
            if not isinstance(digest, str):
                try:
                    digest = _digest(base64.b64decode(str(data.get("original", ""))))
                except ValueError:
                    return
            self.letters.setdefault(digest, []).append(
                (str(data.get("service")), str(data.get("error_type"))))
            if data.get("service") != "intake":
                self.others[str(data.get("service"))] += 1
            return
        self.event_ids.add(str(event.get("id")))
        outcome = "registered" if topic == REGISTERED.name else "recorded"
        for ref in (event.get("correlationid"), event.get("causationid")):
            if isinstance(ref, str):
                self.correlated.setdefault(ref, outcome)

    def close(self) -> None:
        self.consumer.close()


DELIVERY_ROUNDS = 8  # sends of a record the broker did not take (a batch expired in a busy producer)


def fuzz_kafka(producer: KafkaProducer, channel: str, items: Sequence[Sample]
               ) -> tuple[Tally, list[tuple[str, str]]]:
    """Produce every sample, each confirmed by the broker; the tally so far and (event id, record
    digest) per sample to account.

    A record the broker did not take (kafka-python expires a batch that waited too long in a
    busy producer, and says so only in its future) is sent again, up to DELIVERY_ROUNDS times;
    a sample is counted sent only once the broker has it, so no outcome is looked for in vain.
    """
    tally, sent = Tally(channel, "kafka"), []
    started = time.monotonic()
    outstanding = []
    for sample in items:
        event_id = str(uuid.uuid4())
        outstanding.append((event_id, sample.record is None, record_of(sample, event_id), sample.kind))
    for attempt in range(DELIVERY_ROUNDS):
        futures = [(entry, producer.send(INBOUND.name, key=entry[0].encode(), value=entry[2]))
                   for entry in outstanding]
        producer.flush()
        outstanding = []
        for (event_id, enveloped, value, kind), future in futures:
            if future.failed():
                outstanding.append((event_id, enveloped, value, kind))
                continue
            # a sample of bytes that are no record is known by its digest only (its dead letter)
            sent.append((event_id if enveloped else "", _digest(value)))
            tally.sent += 1
            tally.kinds[kind] += 1
        if not outstanding:
            break
        time.sleep(min(30.0, 2.0 ** attempt))  # the broker is busy: give it a moment
    if outstanding:
        raise RuntimeError(f"the broker did not take {len(outstanding)} {channel} records after "
                           f"{DELIVERY_ROUNDS} rounds of sends")
    tally.seconds = time.monotonic() - started
    return tally, sent


def account(watcher: Watcher, pending: Iterable[tuple[Tally, list[tuple[str, str]]]], *, timeout: float,
            http_events: Mapping[str, tuple[Tally, set[str]]] = {}) -> None:  # noqa: B006 - read only
    """Poll until every Kafka sample has an outcome and every HTTP 202 event is seen, or timeout."""
    pending = list(pending)
    deadline = time.monotonic() + timeout

    def done() -> bool:
        letters = Counter({k: len(v) for k, v in watcher.letters.items()})
        for _, sent in pending:
            for eid, digest in sent:
                if eid and eid in watcher.correlated:
                    continue
                if letters[digest] <= 0:
                    return False
                letters[digest] -= 1
        return all(e in watcher.event_ids for _, events in http_events.values() for e in events)

    while not done() and time.monotonic() < deadline:
        watcher.poll()
    letters = {k: list(v) for k, v in watcher.letters.items()}
    for tally, sent in pending:
        for eid, digest in sent:
            if eid and eid in watcher.correlated:
                outcome = watcher.correlated[eid]
                tally.registered += outcome == "registered"
                tally.recorded += outcome == "recorded"
            elif letters.get(digest):
                service, error = letters[digest].pop()
                tally.dead_lettered[error] += 1
                if error not in CLASSIFIED or service != "intake":
                    tally.unexpected[f"{service}:{error}"] += 1
            else:
                tally.missing += 1
    for tally, events in http_events.values():
        tally.missing += sum(1 for e in events if e not in watcher.event_ids)


# ---- the campaign ---------------------------------------------------------------------------

@dataclass
class Report:
    tallies: list[Tally]
    healthy: bool
    other_dead_letters: Counter[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.healthy and all(t.ok for t in self.tallies)

    def text(self) -> str:
        lines = [HEADER, *(t.line() for t in self.tallies)]
        total = Tally("total", "")
        for t in self.tallies:
            total.sent += t.sent
            total.registered += t.registered
            total.recorded += t.recorded
            total.dead_lettered.update(t.dead_lettered)
            total.client_errors.update(t.client_errors)
            total.server_errors.update(t.server_errors)
            total.unexpected.update(t.unexpected)
            total.missing += t.missing
        total.seconds = self.seconds
        lines.append(total.line())
        lines.append("dead letters by error type: " + ", ".join(
            f"{e} {n}" for e, n in total.dead_lettered.most_common()))
        if self.other_dead_letters:
            lines.append("dead letters of other services seen meanwhile: " + ", ".join(
                f"{s} {n}" for s, n in self.other_dead_letters.most_common()))
        lines.append(f"intake /healthz after the run: {'200' if self.healthy else 'NOT HEALTHY'}")
        lines.append("result: " + (
            "every payload registered, dead-lettered with a reason or answered 4xx" if self.ok
            else "FAILED (5xx, unexpected dead letters or missing outcomes)"))
        return "\n".join(lines)


def healthy(intake_url: str) -> bool:
    base = urllib.parse.urlsplit(intake_url)
    conn = http.client.HTTPConnection(base.hostname or "127.0.0.1", base.port or 80, timeout=10)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def campaign(channels: Sequence[str], count: int, *, intake_url: str, bootstrap: Sequence[str],
             secrets: Mapping[str, Any], via: Sequence[str] = ("http", "kafka"), seed: int = 0,
             concurrency: int = 8, timeout: float = 600.0, progress: bool = False) -> Report:
    """Send ``count`` samples per channel and path; account for every one (see the module doc)."""
    started = time.monotonic()
    run = uuid.uuid4().hex[:8]
    watcher = Watcher(bootstrap)
    producer = KafkaProducer(bootstrap_servers=list(bootstrap), client_id="complaints-fuzz", acks="all",
                             linger_ms=5, max_request_size=8 * 1024 * 1024, **kafka_python_producer_kwargs())
    tallies: list[Tally] = []
    try:
        known = _known_complaints(intake_url, secrets, run) if "survey_reply" in channels else []
        http_events: dict[str, tuple[Tally, set[str]]] = {}
        pending: list[tuple[Tally, list[tuple[str, str]]]] = []
        # the Kafka samples first: intake works through them while the HTTP ones are posted
        for channel in channels if "kafka" in via else ():
            items = list(samples(channel, count, seed=seed + 1, tag=f"k{run}-", complaint_ids=known))
            tally, sent = fuzz_kafka(producer, channel, items)
            pending.append((tally, sent))
            tallies.append(tally)
            _say(progress, tally)
        for channel in channels if "http" in via else ():
            items = list(samples(channel, count, seed=seed, tag=f"h{run}-", complaint_ids=known))
            tally, events = fuzz_http(intake_url, channel, items, secrets=secrets, concurrency=concurrency)
            http_events[channel] = (tally, events)
            tallies.append(tally)
            _say(progress, tally)
            watcher.poll()
        account(watcher, pending, timeout=timeout, http_events=http_events)
    finally:
        producer.close()
        watcher.close()
    return Report(tallies, healthy(intake_url), watcher.others, time.monotonic() - started)


def _say(progress: bool, tally: Tally) -> None:
    if progress:
        print(f"  sent {tally.sent} {tally.channel} over {tally.via} in {tally.seconds:.1f}s", flush=True)


def _known_complaints(intake_url: str, secrets: Mapping[str, Any], run: str) -> list[str]:
    """A few complaints registered for this run, so some survey replies answer a real one."""
    base = urllib.parse.urlsplit(intake_url)
    conns: dict[int, http.client.HTTPConnection] = {}
    ids = []
    for n in range(3):
        body = json.dumps({"message_id": f"fuzz-{run}-{n}", "text": "Fuzz anchor: the kettle leaks"}
                          ).encode()
        anchor = Sample("sms", "anchor", body, "application/json", None)
        status, _, answer = _post(base, anchor, secrets, conns)
        if status == 202:
            ids.append(json.loads(answer)["complaint_id"])
    for conn in conns.values():
        conn.close()
    return ids


def main(channel: str, count: int, *, via: str, seed: int, url: str | None, concurrency: int,
         timeout: float) -> int:
    """The command: 0 when every payload was accounted for and intake stayed healthy, else 1."""
    import logging
    import os

    from services.common.settings import CommonSettings, load_settings
    from services.intake.signing import load_secrets

    logging.getLogger("kafka").setLevel(logging.ERROR)
    settings = load_settings(CommonSettings)
    channels = list(CHANNELS) if channel == "all" else [channel]
    if any(c not in CHANNELS for c in channels):
        print(f"complaints fuzz: unknown channel {channel!r}; one of: all, {', '.join(CHANNELS)}")
        return 2
    intake_url = url or f"http://127.0.0.1:{os.environ.get('INTAKE_HTTP_PORT', '8080')}"
    report = campaign(channels, count, intake_url=intake_url, bootstrap=settings.bootstrap_list(),
                      secrets=load_secrets(settings.data_dir), via=via.split(","), seed=seed,
                      concurrency=concurrency, timeout=timeout, progress=True)
    print(report.text())
    return 0 if report.ok else 1
