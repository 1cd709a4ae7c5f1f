"""The services' batch consumer: aiokafka's ``getmany`` straight into the handlers.

faust hands an agent one record at a time (a fetch thread, the conductor, a stream per actor,
one ack per event); profiled under load, that machinery was 43-66 % of every faust service's CPU
(docs/performance.md). ``BatchConsumer`` reads a service's input topics with faust's own client
library (an ``AIOKafkaConsumer``, run as a task of the service's faust app, which keeps its web
endpoints, metrics, timers and producer: ``attach``), gathers up to ``size`` records, closing a
batch ``within`` seconds after its first record (an idle consumer waits for one), hands the batch
to ``handle`` and then commits exactly the offsets handled (``enable_auto_commit=False``). Up to
``depth`` batches are under way at once (the next is read and parsed while one is handled);
offsets are committed in batch order, each batch's after it and every batch before it were
handled.

What ``handle`` does with a batch:
- ``batched``: the whole batch through one batch handler (``Boundary.run_batch``: bad records
  dead-lettered with their reason, transient errors retried, never skipped): the archive's one
  write per batch.
- ``Keyed``: each record through its topic's record handler (``Boundary.run``), the records of
  one key (a complaint) one after the other in topic order, also across the batches in flight,
  and different keys at once, up to a bound: the router, the SLA monitor and the notifier.

Group membership: the group id is faust's (``complaints-<service>``), so the offsets a faust
worker committed carry over. On a rebalance the batches being handled are finished and
committed first (the revocation waits for them); records gathered but not handled are
dropped, and the broker hands them out again from the committed offsets. A batch cut short
(a stop, a kill) is never committed: it is delivered again, and every effect is idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from schemas.topics import TopicSpec
from services.common.boundary import BatchHandler, Boundary, Handler, Record
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)
IDLE_WAIT = 1.0  # seconds an idle consumer waits for records before it looks again


Handle = Callable[[list[Record]], Awaitable[None]]
"""Handles a batch of records; never raises (but for a cancellation): a record's failure is its
dead letter, an outage is waited out."""


class BatchConsumer:
    """Consume ``specs`` in batches through ``handle``; commit what was handled."""

    def __init__(self, *, settings: CommonSettings, group_id: str, handle: Handle,
                 specs: Sequence[TopicSpec], size: int, within: float, fetch_ahead: int,
                 depth: int = 2, fetch_wait: float | None = None) -> None:
        self.settings, self.group_id, self.handle = settings, group_id, handle
        self.specs = tuple(specs)
        self.size, self.within = size, within
        self.fetch_ahead, self.depth = fetch_ahead, depth
        # how long the broker may hold a fetch for records to come (KAFKA_FETCH_MAX_WAIT: Apache
        # Kafka answers as soon as one comes, tansu only when the wait ends); it paces an idle
        # consumer, so a short one costs CPU when nothing comes
        self.fetch_wait = settings.kafka_fetch_max_wait if fetch_wait is None else fetch_wait
        self.consumer: AIOKafkaConsumer | None = None
        self.committed: dict[TopicPartition, int] = {}  # next offset to read, as committed here
        self.gathered: list[Any] = []  # ConsumerRecords fetched, not handled yet
        self.inflight: list[asyncio.Future[bool]] = []  # batches being handled, oldest first
        self.revoking: asyncio.Event | None = None  # set while partitions are being revoked
        self.rebalances = 0

    def make_consumer(self) -> AIOKafkaConsumer:
        from services.common.transport import aiokafka_kwargs

        s = self.settings
        timeout_ms = int(s.kafka_rebalance_timeout * 1000)
        return AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_list(), client_id=f"{self.group_id}-batch",
            group_id=self.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=timeout_ms, rebalance_timeout_ms=timeout_ms,
            heartbeat_interval_ms=max(int(timeout_ms / 10), 300),
            max_poll_interval_ms=int(s.kafka_max_poll_interval * 1000),
            max_poll_records=self.size, fetch_max_wait_ms=max(1, int(self.fetch_wait * 1000)),
            # records fetched ahead per partition while a batch is handled
            max_partition_fetch_bytes=max(1 << 20, self.fetch_ahead * 1024 // 4),
            **aiokafka_kwargs(s),  # TLS / SASL (services/common/transport.py)
        )

    async def run(self) -> None:
        """Consume until cancelled; the consumer leaves its group on the way out."""
        await asyncio.to_thread(ensure_topics, self.settings.bootstrap_list(), self.specs)
        self.consumer = consumer = self.make_consumer()
        consumer.subscribe(topics=[s.name for s in self.specs], listener=_Listener(self))
        await consumer.start()
        log.info("batch consumer started: group %s, batches of up to %d within %gs, %d in flight",
                 self.group_id, self.size, self.within, self.depth)
        try:
            while True:
                await self.step()
        finally:
            for task in list(self.inflight):  # cut short: never committed, delivered again
                task.cancel()
            await asyncio.gather(*self.inflight, return_exceptions=True)
            await asyncio.shield(consumer.stop())  # leaves the group; commits nothing more

    async def step(self) -> int:
        """Gather one batch and start handling it (at most ``depth`` in flight: the next batch is
        read and parsed while one is handled); return how many records it held."""
        assert self.consumer is not None
        await self.gather(self.consumer)
        while len(self.inflight) >= self.depth:
            await asyncio.wait({self.inflight[0]})
        if self.revoking:  # partitions are going: what was gathered comes again
            self.gathered = []
            await self.revoking.wait()
            return 0
        records = [r for r in self.gathered if self._assigned(r)]
        self.gathered = []
        if not records:
            return 0
        previous = self.inflight[-1] if self.inflight else None
        task = asyncio.ensure_future(self.write(records, previous))
        self.inflight.append(task)
        task.add_done_callback(self.inflight.remove)
        return len(records)

    async def write(self, records: list[Any], previous: asyncio.Future[bool] | None) -> bool:
        """Handle one batch, then (after the batch before it) commit its offsets; True if done."""
        await self.handle([Record(r.topic, r.partition, r.offset, r.key, r.value or b"")
                           for r in records])
        if previous is not None:
            await asyncio.wait({previous})  # offsets are committed in order
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                return False  # the one before was cut short: committing past it would skip it
        await self.commit(records)
        return True

    async def gather(self, consumer: AIOKafkaConsumer) -> list[Any]:
        """Up to ``size`` records: an idle consumer waits (up to ``IDLE_WAIT`` s) for the first,
        then the batch takes what comes within ``within`` s of it."""
        first: float | None = None
        while len(self.gathered) < self.size:
            if first is None:
                wait = IDLE_WAIT
            else:
                wait = first + self.within - time.monotonic()
                if wait <= 0:
                    break
            fetched = await consumer.getmany(timeout_ms=int(wait * 1000),
                                             max_records=self.size - len(self.gathered))
            for tp_records in fetched.values():
                self.gathered.extend(tp_records)
            if not fetched:
                break
            if first is None:
                first = time.monotonic()
        return self.gathered

    def _assigned(self, record: Any) -> bool:
        assert self.consumer is not None
        return TopicPartition(record.topic, record.partition) in self.consumer.assignment()

    async def commit(self, records: Sequence[Any]) -> None:
        """Commit the offsets after the records written (partitions still assigned only)."""
        assert self.consumer is not None
        ends: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            ends[tp] = max(ends.get(tp, 0), r.offset + 1)
        assigned = self.consumer.assignment()
        offsets = {tp: OffsetAndMetadata(end, "") for tp, end in ends.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:  # the group moved on: redelivered
            log.warning("%s: commit of a handled batch refused (%s); its records come again "
                        "(effects are idempotent)", self.group_id, type(exc).__name__)
            return
        except KafkaError as exc:  # the broker does not answer: the next commit covers these
            log.warning("%s: commit failed (%s); the next batch's commit covers it", self.group_id,
                        type(exc).__name__)
            return
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset

    async def revoked(self, tps: set[TopicPartition]) -> None:
        """Before the partitions go: let the batches being written finish (and commit), drop
        the records gathered but not written (the broker hands them out again)."""
        if not tps:  # the first join
            return
        self.rebalances += 1
        self.revoking = asyncio.Event()
        try:
            while self.inflight:
                await asyncio.gather(*self.inflight, return_exceptions=True)
            self.gathered = []
            for tp in tps:
                self.committed.pop(tp, None)
        finally:
            self.revoking.set()
            self.revoking = None

    async def assigned(self, tps: set[TopicPartition]) -> None:
        """New partitions: read where the group committed (the lag counts from there)."""
        assert self.consumer is not None
        self.gathered = []  # fetched before the assignment: read again from the committed offsets
        for tp in tps:
            try:
                offset = await self.consumer.committed(tp)
            except KafkaError:
                offset = None
            self.committed[tp] = offset or 0

    def lag(self) -> dict[str, int]:
        """Records of each input topic not yet committed on this instance's partitions."""
        out: dict[str, int] = {}
        consumer = self.consumer
        if consumer is None:
            return out
        for tp in consumer.assignment():
            high = consumer.highwater(tp)  # None until the first fetch after an assignment
            if high is None:
                continue
            out[tp.topic] = out.get(tp.topic, 0) + max(0, high - self.committed.get(tp, 0))
        return out


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: BatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owner.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.owner.assigned(set(assigned))


def batched(boundary: Boundary, batch: BatchHandler, single: Handler) -> Handle:
    """A batch through one batch handler (``Boundary.run_batch``): the archive's one write."""

    async def handle(records: list[Record]) -> None:
        await boundary.run_batch(batch, single, records)

    return handle


class Keyed:
    """Each record through its topic's handler (``Boundary.run``: retried, dead-lettered, never
    raised); the records of one key in order, different keys at once, at most ``concurrency``.

    A key's records in a batch run one after the other in the order of ``handlers`` (its
    topics: a complaint's registration before its routing), each topic's in offset order, and
    after that key's records of the batches before (a chain per key across the batches in
    flight). faust's agents of ``concurrency`` actors gave no order at all, even within a key.
    """

    def __init__(self, boundary: Boundary, handlers: Mapping[TopicSpec, Handler], *,
                 concurrency: int) -> None:
        self.boundary = boundary
        self.handlers = {spec.name: handler for spec, handler in handlers.items()}
        self.rank = {name: i for i, name in enumerate(self.handlers)}
        self.slots = asyncio.Semaphore(concurrency)
        self.tails: dict[bytes | None, asyncio.Future[None]] = {}  # each key's last chain link

    async def __call__(self, records: list[Record]) -> None:
        by_key: dict[bytes | None, list[Record]] = {}
        for r in records:
            by_key.setdefault(r.key, []).append(r)
        links = []
        for key, own in by_key.items():
            own.sort(key=lambda r: self.rank[r.topic])  # stable: offsets kept within a topic
            link = asyncio.ensure_future(self._run(own, self.tails.get(key)))
            self.tails[key] = link
            link.add_done_callback(functools.partial(self._unlink, key))
            links.append(link)
        try:
            await asyncio.gather(*links)
        except BaseException:  # cut short (a stop): the links go too, and are done before this
            for link in links:  # returns (no handler left running); the batch is not committed
                link.cancel()
            await asyncio.gather(*links, return_exceptions=True)
            raise

    async def _run(self, records: list[Record], before: asyncio.Future[None] | None) -> None:
        if before is not None:  # the key's records of an earlier batch first (never holding a slot)
            await asyncio.wait({before})
        async with self.slots:
            for r in records:
                await self.boundary.run(self.handlers[r.topic], topic=r.topic, partition=r.partition,
                                        offset=r.offset, key=r.key, value=r.value)

    def _unlink(self, key: bytes | None, done: asyncio.Future[None]) -> None:
        if self.tails.get(key) is done:
            del self.tails[key]


def attach(app: faust.App, consumer: BatchConsumer) -> None:
    """Run ``consumer`` as a task of ``app`` in place of faust's own consumer: faust's would join
    the same group with faust's protocol (and with no agent its conductor subscribes to nothing);
    the app's producer, web server and timers run without it."""
    app.batch_consumer = consumer  # type: ignore[attr-defined]  # what it reads (the deploy tests)
    app.boot_strategy.enable_kafka_consumer = False

    @app.task  # type: ignore[untyped-decorator]
    async def consume() -> None:
        await consumer.run()


def consume(app: faust.App, settings: CommonSettings, boundary: Boundary,
            handlers: Mapping[TopicSpec, Handler]) -> Callable[[], dict[str, int]] | None:
    """Wire a service's record handlers, one per input topic: a ``Keyed`` batch consumer
    (KAFKA_CONSUMER=batch, the default) or faust's agents, one per topic, named after it
    (=faust). Returns the batch consumer's lag reading for /metrics (None: faust's)."""
    n = settings.agent_concurrency
    if settings.consumer == "faust":
        for spec, handler in handlers.items():
            boundary.subscribe(app, spec.name.rsplit(".", 1)[-1], handler, spec, concurrency=n)
        return None
    consumer = BatchConsumer(
        settings=settings, group_id=app.conf.id,
        handle=Keyed(boundary, handlers, concurrency=n * len(handlers)), specs=tuple(handlers),
        size=settings.consumer_batch_size, within=settings.consumer_batch_within,
        fetch_ahead=settings.consumer_batch_size, depth=settings.consumer_in_flight)
    attach(app, consumer)
    return consumer.lag


def inputs(app: faust.App) -> set[str]:
    """The topics ``app`` reads: its batch consumer's, or its faust agents'."""
    topics = {t for agent in app.agents.values() for t in agent.channel.topics}
    consumer = getattr(app, "batch_consumer", None)
    return topics | {s.name for s in (consumer.specs if consumer is not None else ())}


def consume_batches(app: faust.App, settings: CommonSettings, boundary: Boundary,
                    groups: Sequence[tuple[str, Sequence[TopicSpec], BatchHandler, Handler]], *,
                    size: int, within: float) -> Callable[[], dict[str, int]] | None:
    """Wire a service's batch handlers, each over a named group of topics: one batch consumer
    whose batches are split by group, the groups' parts handled at once (``Boundary.run_batch``)
    (KAFKA_CONSUMER=batch, the default), or a faust agent of that name per group, batching with
    ``take_batches`` (=faust). Returns the batch consumer's lag reading for /metrics (None:
    faust's)."""
    if settings.consumer == "faust":
        for name, specs, batch, single in groups:
            boundary.subscribe_batches(app, name, batch, single, *specs, size=size, within=within,
                                       concurrency=settings.agent_concurrency)
        return None
    group_of = {spec.name: i for i, (_, specs, _, _) in enumerate(groups) for spec in specs}

    async def handle(records: list[Record]) -> None:
        split: dict[int, list[Record]] = {}
        for r in records:
            split.setdefault(group_of[r.topic], []).append(r)
        await asyncio.gather(*(boundary.run_batch(groups[i][2], groups[i][3], own)
                               for i, own in split.items()))

    consumer = BatchConsumer(settings=settings, group_id=app.conf.id, handle=handle,
                             specs=tuple(spec for _, specs, _, _ in groups for spec in specs),
                             size=size, within=within, fetch_ahead=size)
    attach(app, consumer)
    return consumer.lag
