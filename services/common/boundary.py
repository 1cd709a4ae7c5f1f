"""The consumer boundary: the one place per service where a record's error is classified.

Bad input (``PERMANENT``) is dead-lettered with its reason and the stream goes on; a
dependency that does not answer (``errors.is_transient``: Redis down, OOM, READONLY, LOADING,
TRYAGAIN, CLUSTERDOWN; every retriable broker error) is retried with back-off and never
skipped; when it fails for longer than ``OUTAGE_PAUSE_AFTER`` the service pauses:
no new record is started (``complaints_consumer_paused`` reads 1; faust's buffers fill,
then its own flow control stops fetching) until the records in flight get through. An
unexpected error is logged and dead-lettered, so a bug costs one record, not the stream. A
dead letter is itself published with retries (truncated, with the original's size and
SHA-256, when it would not fit in a broker message) before its offset is acked.

Offsets are acknowledged only after the handler's effect: faust acks an event (and a
``take_events`` batch) when its iterator moves on *or is closed*, which includes a handler
that raised or was cancelled; the boundary therefore holds one reference of its own on every
message and drops it only once the record's effect (or its dead letter) is on the broker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import faust
from faust.types import EventT
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from schemas.envelope import derived_id
from schemas.events import DeadLetter, DeadLetterEvent, LetterSeal
from schemas.topics import DEADLETTER, TopicSpec
from services.common.errors import TRANSIENT, Rejected, Retry, is_transient

if TYPE_CHECKING:
    from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

Handler = Callable[[bytes | None, bytes], Awaitable[None]]


@dataclass(frozen=True)
class Record:
    """One consumed record, as a batch handler sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


BatchHandler = Callable[[list[Record]], Awaitable[list[BaseException | None]]]
"""Handles a batch; returns each record's bad-input exception (or None); raises if all failed."""

# Errors that mean "this input is bad": dead-letter at once.
PERMANENT = (ValidationError, Rejected, UnicodeDecodeError, json.JSONDecodeError, binascii.Error)
# Errors that mean "a dependency is not answering": wait and try again, never skip. The
# tuple is for ``except`` clauses; ``is_transient`` (which also reads error codes and causes)
# is the rule.
__all__ = ["PERMANENT", "TRANSIENT", "Boundary", "Record", "is_transient", "raw_topic"]
DEADLETTER_MAX_BYTES = 900_000  # the default of DEADLETTER_MAX_BYTES: under Kafka's 1 MB default


def raw_topic(app: faust.App, *specs: TopicSpec) -> faust.TopicT:
    """A faust topic (or several) carrying raw key and value bytes."""
    return app.topic(
        *(s.name for s in specs), key_type=bytes, value_type=bytes,
        key_serializer="raw", value_serializer="raw",
    )


def awaiting(coro: Any) -> list[str]:
    """Where a suspended coroutine waits: each frame of its await chain, outermost first."""
    out = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            out.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return out


class Boundary:
    """The one place per service where any error of a record is caught and classified."""

    def __init__(
        self, *, service: str, publisher: Any, registry: CollectorRegistry,
        max_retries: int = 20, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        settings: CommonSettings | None = None, pause_after: float = 30.0,
        max_backoff: float = 10.0, deadletter_max_bytes: int = DEADLETTER_MAX_BYTES,
        seal: Callable[[bytes], tuple[bytes, LetterSeal]] | None = None,
    ) -> None:
        self.service = service
        self.publisher = publisher
        self.max_retries = max_retries
        self.clock = clock
        if settings is not None:
            pause_after, max_backoff = settings.outage_pause_after, settings.outage_max_backoff
            deadletter_max_bytes = settings.deadletter_max_bytes
        self.pause_after, self.max_backoff = pause_after, max_backoff
        self.deadletter_max_bytes = deadletter_max_bytes
        self.seal = seal  # seals a letter's original bytes (they may hold personal data)
        self._apps: list[faust.App] = []
        self._failing_since: float | None = None  # monotonic start of the current outage
        self._running = asyncio.Event()  # cleared while paused: no new record is started
        self._running.set()
        self.is_paused = False
        self.acks = AckOrder()
        self.dead_lettered = Counter(
            "complaints_deadlettered_total", "Records sent to the dead-letter topic.",
            ["service", "topic", "error"], registry=registry,
        )
        self.processed = Counter(
            "complaints_records_processed_total", "Input records handled.",
            ["service", "topic"], registry=registry,
        )
        self.stuck = Counter(
            "complaints_periodic_jobs_stuck_total", "Periodic job runs cancelled after their timeout.",
            ["service", "job"], registry=registry,
        )
        self.paused = Gauge(
            "complaints_consumer_paused", "1 while the service has paused consumption because a "
            "dependency (Redis, the broker, the database) has failed for longer than "
            "OUTAGE_PAUSE_AFTER; records wait on the broker, uncommitted.",
            ["service"], registry=registry,
        )
        self.paused.labels(service).set(0)
        self.outage_retries = Counter(
            "complaints_outage_retries_total", "Attempts of a record (or dead letter) that failed "
            "because a dependency did not answer; each is retried.",
            ["service", "error"], registry=registry,
        )

    # ---- outages: retry, pause, resume ---------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        return min(_backoff(attempt), self.max_backoff)

    def failed(self, exc: BaseException, *, now: float | None = None) -> None:
        """Note a dependency failure; past ``pause_after`` seconds of failures, pause consumption."""
        now = time.monotonic() if now is None else now
        self.outage_retries.labels(self.service, type(exc).__name__).inc()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since >= self.pause_after:
            self._pause(exc, now - self._failing_since)

    def answered(self) -> None:
        """A dependency answered (a record's effect is done): end the outage, resume consumption."""
        self._failing_since = None
        if self.is_paused:
            self._resume()

    def _pause(self, exc: BaseException, failing_for: float) -> None:
        # Not faust's pause_partitions: records a fetch in flight returns for a partition
        # paused meanwhile are dropped by faust (Consumer.getmany) after the position moved
        # past them, and later counted as a gap: lost. Instead no new record is started; the
        # ones in flight keep retrying (they are the probes), and once faust's buffers are
        # full its own flow control stops the fetching.
        if not self.is_paused:
            self.is_paused = True
            self._running.clear()
            self.paused.labels(self.service).set(1)
            log.error("%s: a dependency has failed for %.0fs (last: %s); consumption paused, "
                      "records wait uncommitted until it answers", self.service, failing_for,
                      type(exc).__name__)

    async def _gate(self) -> None:
        """While paused, wait before starting a record: until the records in flight get through,
        or at most OUTAGE_MAX_BACKOFF (then this one probes too: no probe is ever the last)."""
        if self.is_paused:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._running.wait(), timeout=self.max_backoff)

    def _resume(self) -> None:
        self.is_paused = False
        self._running.set()
        self.paused.labels(self.service).set(0)
        log.warning("%s: dependencies answer again; consumption resumed", self.service)

    # ---- one record, one batch -------------------------------------------------------------

    async def run(self, handler: Handler, *, topic: str, partition: int, offset: int,
                  key: bytes | None, value: bytes) -> None:
        """Handle one record: retry transient errors, dead-letter bad input, never raise."""
        where = f"{topic}:{partition}:{offset}"
        retries = failures = 0
        await self._gate()
        while True:
            try:
                await handler(key, value)
            except PERMANENT as exc:
                await self.dead_letter(where, topic, key, value, exc)
                return
            except Exception as exc:  # classified here: an outage waits, anything else costs the record
                if isinstance(exc, Retry):  # the effect's state is missing: a bounded wait
                    retries += 1
                    if retries > self.max_retries:
                        await self.dead_letter(where, topic, key, value, exc)
                        return
                    delay = exc.delay
                elif is_transient(exc):  # a dependency does not answer: wait, never skip
                    failures += 1
                    self.failed(exc)
                    delay = self._backoff(failures)
                else:  # a bug costs this record (dead-lettered), never the stream
                    log.exception("%s %s: unexpected error", self.service, where)
                    await self.dead_letter(where, topic, key, value, exc)
                    return
                log.warning("%s %s: transient %s (attempt %d), retrying in %.1fs",
                            self.service, where, type(exc).__name__, retries + failures, delay)
                await asyncio.sleep(delay)
            else:
                self.processed.labels(self.service, topic).inc()
                self.answered()
                return

    async def dead_letter(self, where: str, topic: str, key: bytes | None, value: bytes,
                          exc: BaseException) -> None:
        """Publish the original bytes with the reason to the dead-letter topic; never raise.

        The letter is retried with back-off until the broker takes it (the caller acks the
        record only after this returns). A letter over ``deadletter_max_bytes`` keeps the
        original's first bytes, its size and SHA-256; one the broker refuses outright is sent
        again with the digest alone.
        """
        event = self.letter(where, key, value, exc)
        attempt = 0
        while True:
            try:
                await self.publisher.publish(DEADLETTER, event)
                if attempt:
                    self.answered()  # the broker answers again
                break
            except Exception as err:  # the letter must reach the broker before the offset moves
                attempt += 1
                if is_transient(err):
                    self.failed(err)
                elif event.data.original:  # refused as it is (too large?): keep the digest only
                    log.error("%s %s: dead letter refused (%s); sending its digest only",
                              self.service, where, type(err).__name__)
                    event = self.letter(where, key, value, exc, keep=0)
                    continue
                delay = self._backoff(attempt)
                log.warning("%s %s: dead-letter publish failed (%s, attempt %d); retrying in %.1fs",
                            self.service, where, type(err).__name__, attempt, delay)
                await asyncio.sleep(delay)
        self.dead_lettered.labels(self.service, topic, type(exc).__name__).inc()
        log.warning("%s %s: dead-lettered (%s) subject=%s%s", self.service, where,
                    type(exc).__name__, event.subject,
                    " (original truncated)" if event.data.truncated else "")

    def letter(self, where: str, key: bytes | None, value: bytes, exc: BaseException, *,
               keep: int | None = None) -> DeadLetterEvent:
        """The dead letter of a record; truncated to fit ``deadletter_max_bytes`` (or ``keep``)."""

        def build(original: bytes, key_bytes: bytes | None) -> DeadLetterEvent:
            kept, sealed = len(original), None
            if self.seal is not None:
                original, sealed = self.seal(original)
            return DeadLetterEvent.new(
                DeadLetter(
                    service=self.service, source=where, reason=_reason(exc),
                    error_type=type(exc).__name__,
                    original_key=base64.b64encode(key_bytes).decode() if key_bytes else None,
                    original=base64.b64encode(original).decode(), failed_at=self.clock(),
                    original_size=len(value), original_sha256=hashlib.sha256(value).hexdigest(),
                    truncated=kept < len(value), sealed=sealed,
                ),
                id=derived_id("deadletter", self.service, where),
                source=self.service, time=self.clock(), subject=_subject_of(value),
            )

        key_part = key if key is None or len(key) <= MAX_KEY_BYTES else key[:MAX_KEY_BYTES]
        if keep is None:
            event = build(value, key_part)
            size = len(event.to_bytes())
            if size <= self.deadletter_max_bytes:
                return event
            overhead = size - 4 * ((len(value) + 2) // 3)  # the letter without its base64 original
            keep = max(0, (self.deadletter_max_bytes - overhead - 64) // 4 * 3)
        return build(value[:keep], key_part)

    async def guard(self, name: str, job: Callable[[], Awaitable[object]], *,
                    timeout: float | None = None) -> None:
        """Run a periodic job; an error is logged and the next run tries again.

        A job still running after ``timeout`` seconds is cancelled, and where it was stuck is
        logged: a hung call must not stop every later run of the job.
        """
        try:
            task = asyncio.ensure_future(job())
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                where = "\n".join(awaiting(task.get_coro()))
                task.cancel()
                self.stuck.labels(self.service, name).inc()
                log.error("%s %s: still running after %gs, cancelled; it was waiting at:\n%s",
                          self.service, name, timeout, where)
                return
            task.result()
        except Exception as exc:  # a periodic job's failure must not stop the worker
            if is_transient(exc):
                log.warning("%s %s: transient %s; next run retries", self.service, name,
                            type(exc).__name__)
            else:
                log.exception("%s %s: unexpected error", self.service, name)

    def subscribe(self, app: faust.App, name: str, handler: Handler, *specs: TopicSpec,
                  concurrency: int) -> None:
        """Run ``handler`` over every record of ``specs`` in a faust agent called ``name``."""
        self._watch(app)

        async def agent(stream: faust.StreamT[bytes]) -> None:
            await self.consume(stream, handler)

        app.agent(raw_topic(app, *specs), name=f"{self.service}.{name}",
                  concurrency=concurrency)(agent)

    def subscribe_batches(self, app: faust.App, name: str, batch: BatchHandler, single: Handler,
                          *specs: TopicSpec, size: int, within: float, concurrency: int) -> None:
        """Like ``subscribe``, handing ``batch`` up to ``size`` records gathered within ``within`` s."""
        self._watch(app)

        async def agent(stream: faust.StreamT[bytes]) -> None:
            await self.consume_batches(stream, batch, single, size=size, within=within)

        app.agent(raw_topic(app, *specs), name=f"{self.service}.{name}",
                  concurrency=concurrency)(agent)

    def _watch(self, app: faust.App) -> None:
        if app not in self._apps:
            self._apps.append(app)

            def revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
                self.acks.revoked(revoked)

            app.on_partitions_revoked.connect(revoked)  # type: ignore[arg-type]

    async def run_batch(self, batch: BatchHandler, single: Handler, records: list[Record]) -> None:
        """Handle a batch; dead-letter its bad records; never raise.

        Transient failures retry the whole batch (effects are idempotent). An unexpected
        error falls back to record-at-a-time, so one bad record costs only itself.
        """
        attempt = 0
        await self._gate()
        while True:
            try:
                outcomes = await batch(records)
                break
            except Exception as exc:  # classified: an outage retries, a bug goes record by record
                if not is_transient(exc):
                    log.exception("%s batch of %d failed; handling its records one by one",
                                  self.service, len(records))
                    for r in records:
                        await self.run(single, topic=r.topic, partition=r.partition, offset=r.offset,
                                       key=r.key, value=r.value)
                    return
                attempt += 1
                self.failed(exc)
                delay = self._backoff(attempt)
                log.warning("%s batch of %d: transient %s (attempt %d), retrying in %.1fs",
                            self.service, len(records), type(exc).__name__, attempt, delay)
                await asyncio.sleep(delay)
        self.answered()
        for r, bad in zip(records, outcomes, strict=True):
            if bad is None:
                self.processed.labels(self.service, r.topic).inc()
            else:
                await self.dead_letter(f"{r.topic}:{r.partition}:{r.offset}", r.topic, r.key,
                                       r.value, bad)

    async def consume(self, stream: faust.StreamT[bytes], handler: Handler) -> None:
        """Drive a faust stream through ``handler``; the offset is acked after the effect."""
        stream.add_processor(self.acks.entering(stream))
        event: EventT[bytes]
        async for event in stream.events():
            msg = event.message
            try:
                await self.run(handler, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                               key=msg.key, value=msg.value or b"")
            except BaseException:  # cancelled mid-effect (a stop, a rebalance): never acked
                self.acks.cut([event])
                raise
            await self.acks.done(stream, [event])

    async def consume_batches(self, stream: faust.StreamT[bytes], batch: BatchHandler,
                              single: Handler, *, size: int, within: float) -> None:
        """Drive a faust stream through ``batch`` in batches; each offset acked after the effect."""
        stream.add_processor(self.acks.entering(stream))  # before take_batches' own processor
        # take_batches acks its batch when the loop resumes it or closes it (a raise, a cancel)
        async for events in take_batches(cast(faust.Stream[Any], stream), size, within=within):
            records = [Record(e.message.topic, e.message.partition, e.message.offset,
                              e.message.key, e.message.value or b"") for e in events]
            try:
                await self.run_batch(batch, single, records)
            except BaseException:  # cancelled mid-effect: never acked
                self.acks.cut(events)
                raise
            await self.acks.done(stream, events)


async def take_batches(stream: faust.Stream[Any], max_: int, *, within: float,
                       ) -> AsyncIterator[list[EventT[Any]]]:
    """Batches of up to ``max_`` events of ``stream``: faust's ``Stream.take_events`` without its
    idle cost.

    ``take_events`` wakes every ``within`` seconds whether or not a record came (an idle service
    with eight agents of a 20 ms window woke 400 times a second) and cuts batches on that fixed
    tick. Here an idle stream waits for its first record, and a batch closes when it is full or
    ``within`` seconds after its first record. As in ``take_events``, the stream's own acks are
    off, a batch's events are acked when the caller resumes (or closes) the generator, and no
    event enters the next batch while one is being handled.
    """
    events: list[EventT[Any]] = []
    has_events, full, consumed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    consuming: asyncio.Future[None] | None = None  # pending while a batch is being handled

    async def add(value: Any) -> Any:
        nonlocal consuming
        try:
            if consuming is not None:
                try:
                    await consuming
                finally:
                    consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_batches found current_event is None")
            events.append(event)
            has_events.set()
            if len(events) >= max_:  # strict: never more than max_ in a batch
                full.set()
                consumed.clear()
                await stream.wait(consumed)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as take_events: the stream crashes, the worker sees it
            log.exception("error adding to a batch: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # acked here, after the caller's effect
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # type: ignore[arg-type]  # as take_events
    loop = asyncio.get_running_loop()
    while not stream.should_stop:
        if not events and await stream.wait_for_stopped(has_events):  # type: ignore[arg-type]
            break  # idle until a record comes (or the stream stops)
        if not full.is_set():
            await stream.wait_for_stopped(full, timeout=within)  # type: ignore[arg-type]
        if not events:
            continue
        consuming = loop.create_future()
        try:
            yield list(events)
        finally:
            batch = list(events)
            events.clear()
            has_events.clear()
            for event in batch:
                await stream.ack(event)
            if not consuming.done():
                consuming.set_result(None)
            full.clear()
            consumed.set()


class AckOrder:
    """Acks a record only after its effect *and* after every earlier record of its partition.

    faust acks an event when its iterator moves on or is closed (so also after a handler
    raised or was cancelled), and its commit does not see a gap of one record right after the
    committed offset (``Consumer._new_offset``: ``min(acked) - committed > 1``), so a later
    record acked while an earlier one is still in flight lets the commit pass the earlier one.
    Every record therefore takes a reference as it enters the stream (a stream processor:
    consumption order), dropped only when it and all the records of its partition before it
    are done. A record cut short is never acked: its partition commits nothing more in this
    process (later records are handled, not committed) until the partition is revoked, after
    which the broker hands it out again.
    """

    def __init__(self) -> None:
        self._open: dict[Any, dict[int, list[Any]]] = {}  # tp -> offset -> [event, done]
        self._cut: set[Any] = set()

    def entering(self, stream: faust.StreamT[Any]) -> Callable[[Any], Any]:
        """A stream processor taking the reference of each event as it enters ``stream``."""

        def enter(value: Any) -> Any:
            event = stream.current_event
            if event is not None:
                msg = event.message
                if msg.tp in self._cut:
                    _forget(msg)
                else:
                    msg.incref()
                    self._open.setdefault(msg.tp, {})[msg.offset] = [event, False]
            return value

        return enter

    async def done(self, stream: faust.StreamT[Any], events: list[Any]) -> None:
        """The effects of ``events`` are on the broker: ack every finished prefix of their partitions."""
        tps = set()
        for event in events:
            msg = event.message
            entry = self._open.get(msg.tp, {}).get(msg.offset)
            if entry is not None:
                entry[1] = True
                tps.add(msg.tp)
        for tp in tps:
            entries = self._open[tp]
            while entries:
                offset, (event, finished) = next(iter(entries.items()))
                if not finished:
                    break
                del entries[offset]
                await stream.ack(event)

    def cut(self, events: list[Any]) -> None:
        """``events`` were cut short: they and everything after them in their partitions stay unacked."""
        for event in events:
            tp = event.message.tp
            self._cut.add(tp)
            entries = self._open.get(tp, {})
            for offset in [o for o in entries if o >= event.message.offset]:
                _forget(entries.pop(offset)[0].message)
            _forget(event.message)

    def revoked(self, tps: set[Any]) -> None:
        """A rebalance took ``tps`` away: the broker hands their uncommitted records out again."""
        for tp in tps:
            self._cut.discard(tp)
            self._open.pop(tp, None)


def _forget(message: Any) -> None:
    """Let faust stop waiting for a message without acking it: its offset is never committed."""
    message.acked = True  # what faust's ack sets, without adding the offset to the committable ones


MAX_KEY_BYTES = 4096  # a dead letter keeps at most this much of a record's key


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt``: exponential, capped at 10 s (and OUTAGE_MAX_BACKOFF)."""
    return float(min(0.2 * 2**attempt, 10.0))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        return "schema: " + "; ".join(parts)[:900]
    return f"{type(exc).__name__}: {exc}"[:900]


def _subject_of(value: bytes) -> str | None:
    try:
        subject = json.loads(value).get("subject")
    except (ValueError, AttributeError, RecursionError):  # RecursionError: deeply nested JSON
        return None
    return subject if isinstance(subject, str) else None
