"""The consumer boundary: the one place per service where a record's error is classified.

Bad input (``PERMANENT``) is dead-lettered with its reason and the stream goes on; a
dependency that does not answer (``TRANSIENT``) is retried with back-off and never skipped;
an unexpected error is logged and dead-lettered, so a bug costs one record, not the stream.
Offsets are acknowledged only after the handler's effect.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faust
import redis.asyncio as aioredis
from faust.types import EventT
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from schemas.envelope import derived_id
from schemas.events import DeadLetter, DeadLetterEvent
from schemas.topics import DEADLETTER, TopicSpec
from services.common.errors import Rejected, Retry

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
# Errors that mean "a dependency is not answering": wait and try again, never skip.
TRANSIENT = (Retry, aioredis.ConnectionError, aioredis.TimeoutError, ConnectionError,
             asyncio.TimeoutError, OSError)


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
    ) -> None:
        self.service = service
        self.publisher = publisher
        self.max_retries = max_retries
        self.clock = clock
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

    async def run(self, handler: Handler, *, topic: str, partition: int, offset: int,
                  key: bytes | None, value: bytes) -> None:
        """Handle one record: retry transient errors, dead-letter bad input, never raise."""
        where = f"{topic}:{partition}:{offset}"
        attempt = 0
        while True:
            try:
                await handler(key, value)
                self.processed.labels(self.service, topic).inc()
                return
            except PERMANENT as exc:
                await self.dead_letter(where, topic, key, value, exc)
                return
            except TRANSIENT as exc:
                attempt += 1
                delay = exc.delay if isinstance(exc, Retry) else _backoff(attempt)
                if isinstance(exc, Retry) and attempt > self.max_retries:
                    await self.dead_letter(where, topic, key, value, exc)
                    return
                log.warning("%s %s: transient %s (attempt %d), retrying in %.1fs",
                            self.service, where, type(exc).__name__, attempt, delay)
                await asyncio.sleep(delay)
            except Exception as exc:  # a bug costs this record (dead-lettered), never the stream
                log.exception("%s %s: unexpected error", self.service, where)
                await self.dead_letter(where, topic, key, value, exc)
                return

    async def dead_letter(self, where: str, topic: str, key: bytes | None, value: bytes,
                          exc: BaseException) -> None:
        """Publish the original bytes with the reason to the dead-letter topic."""
        reason = _reason(exc)
        subject = _subject_of(value)
        event = DeadLetterEvent.new(
            DeadLetter(
                service=self.service, source=where, reason=reason, error_type=type(exc).__name__,
                original_key=base64.b64encode(key).decode() if key else None,
                original=base64.b64encode(value).decode(), failed_at=self.clock(),
            ),
            id=derived_id("deadletter", self.service, where),
            source=self.service, time=self.clock(), subject=subject,
        )
        while True:
            try:
                await self.publisher.publish(DEADLETTER, event)
                break
            except TRANSIENT:
                log.warning("%s %s: dead-letter publish failed; retrying", self.service, where)
                await asyncio.sleep(1.0)
        self.dead_lettered.labels(self.service, topic, type(exc).__name__).inc()
        log.warning("%s %s: dead-lettered (%s) subject=%s", self.service, where,
                    type(exc).__name__, subject)

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
        except TRANSIENT as exc:
            log.warning("%s %s: transient %s; next run retries", self.service, name,
                        type(exc).__name__)
        except Exception:  # a periodic job's bug must not stop the worker
            log.exception("%s %s: unexpected error", self.service, name)

    def subscribe(self, app: faust.App, name: str, handler: Handler, *specs: TopicSpec,
                  concurrency: int) -> None:
        """Run ``handler`` over every record of ``specs`` in a faust agent called ``name``."""

        async def agent(stream: faust.StreamT[bytes]) -> None:
            await self.consume(stream, handler)

        app.agent(raw_topic(app, *specs), name=f"{self.service}.{name}",
                  concurrency=concurrency)(agent)

    def subscribe_batches(self, app: faust.App, name: str, batch: BatchHandler, single: Handler,
                          *specs: TopicSpec, size: int, within: float, concurrency: int) -> None:
        """Like ``subscribe``, handing ``batch`` up to ``size`` records gathered within ``within`` s."""

        async def agent(stream: faust.StreamT[bytes]) -> None:
            # take_events acks the batch's offsets only after this body has run
            async for events in stream.take_events(size, within=within):  # type: ignore[attr-defined]
                records = [Record(e.message.topic, e.message.partition, e.message.offset,
                                  e.message.key, e.message.value or b"") for e in events]
                await self.run_batch(batch, single, records)

        app.agent(raw_topic(app, *specs), name=f"{self.service}.{name}",
                  concurrency=concurrency)(agent)

    async def run_batch(self, batch: BatchHandler, single: Handler, records: list[Record]) -> None:
        """Handle a batch; dead-letter its bad records; never raise.

        Transient failures retry the whole batch (effects are idempotent). An unexpected
        error falls back to record-at-a-time, so one bad record costs only itself.
        """
        attempt = 0
        while True:
            try:
                outcomes = await batch(records)
                break
            except TRANSIENT as exc:
                attempt += 1
                delay = _backoff(attempt)
                log.warning("%s batch of %d: transient %s (attempt %d), retrying in %.1fs",
                            self.service, len(records), type(exc).__name__, attempt, delay)
                await asyncio.sleep(delay)
            except Exception:  # a bug in the batch path: isolate it record by record
                log.exception("%s batch of %d failed; handling its records one by one",
                              self.service, len(records))
                for r in records:
                    await self.run(single, topic=r.topic, partition=r.partition, offset=r.offset,
                                   key=r.key, value=r.value)
                return
        for r, bad in zip(records, outcomes, strict=True):
            if bad is None:
                self.processed.labels(self.service, r.topic).inc()
            else:
                await self.dead_letter(f"{r.topic}:{r.partition}:{r.offset}", r.topic, r.key,
                                       r.value, bad)

    async def consume(self, stream: faust.StreamT[bytes], handler: Handler) -> None:
        """Drive a faust stream through ``handler``; the offset is acked after the effect."""
        event: EventT[bytes]
        async for event in stream.events():
            msg = event.message
            await self.run(handler, topic=msg.topic, partition=msg.partition, offset=msg.offset,
                           key=msg.key, value=msg.value or b"")


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt``: exponential, capped at 10 s."""
    return float(min(0.2 * 2**attempt, 10.0))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        return "schema: " + "; ".join(parts)[:900]
    return f"{type(exc).__name__}: {exc}"[:900]


def _subject_of(value: bytes) -> str | None:
    try:
        subject = json.loads(value).get("subject")
    except (ValueError, AttributeError):
        return None
    return subject if isinstance(subject, str) else None
