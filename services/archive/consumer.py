"""The archive's batch consumer: aiokafka's ``getmany`` straight into one write per batch.

faust hands an agent one record at a time (fetch thread, conductor, stream, one ack per
event); at several thousand events a second that per-record path, not the database, was
half the archive's CPU. ``BatchConsumer`` reads the five input topics with faust's own
client library (an ``AIOKafkaConsumer``, run as a task of the archive's faust app, which
keeps its web endpoints, metrics, timers and producer), gathers up to ``size`` records
within ``within`` seconds, hands them to the boundary's ``run_batch`` (bad records
dead-lettered with their reason, transient errors retried, never skipped) and then commits
exactly the offsets written (``enable_auto_commit=False``). Up to ``depth`` batches are under
way at once (the next is read and parsed while one is written; the database serialises
writes to the same complaints); offsets are committed in batch order, each batch's after
it and every batch before it were written.

Group membership: the group id is faust's (``complaints-archive``), so the offsets a faust
archive committed carry over. On a rebalance the batches being written are finished and
committed first (the revocation waits for them); records gathered but not written are
dropped, and the broker hands them out again from the committed offsets. A batch cut short
(a stop, a kill) is never committed: it is delivered again, and appends are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from schemas.topics import TopicSpec
from services.common.boundary import BatchHandler, Boundary, Handler, Record
from services.common.kafka import ensure_topics
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)


class BatchConsumer:
    """Consume ``specs`` in batches through ``boundary.run_batch``; commit what was written."""

    def __init__(self, *, settings: CommonSettings, group_id: str, boundary: Boundary,
                 batch: BatchHandler, single: Handler, specs: Sequence[TopicSpec], size: int,
                 within: float, fetch_ahead: int, depth: int = 2) -> None:
        self.settings, self.group_id, self.boundary = settings, group_id, boundary
        self.batch, self.single, self.specs = batch, single, tuple(specs)
        self.size, self.within = size, within
        self.fetch_ahead, self.depth = fetch_ahead, depth
        self.consumer: AIOKafkaConsumer | None = None
        self.committed: dict[TopicPartition, int] = {}  # next offset to read, as committed here
        self.gathered: list[Any] = []  # ConsumerRecords fetched, not written yet
        self.inflight: list[asyncio.Future[bool]] = []  # batches being written, oldest first
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
            max_poll_records=self.size, fetch_max_wait_ms=int(min(self.within, 0.5) * 1000),
            # records fetched ahead per partition while a batch is written
            max_partition_fetch_bytes=max(1 << 20, self.fetch_ahead * 1024 // 4),
            **aiokafka_kwargs(s),  # TLS / SASL (services/common/transport.py)
        )

    async def run(self) -> None:
        """Consume until cancelled; the consumer leaves its group on the way out."""
        await asyncio.to_thread(ensure_topics, self.settings.bootstrap_list(), self.specs)
        self.consumer = consumer = self.make_consumer()
        consumer.subscribe(topics=[s.name for s in self.specs], listener=_Listener(self))
        await consumer.start()
        log.info("archive batch consumer started: group %s, batches of up to %d within %gs, "
                 "%d in flight", self.group_id, self.size, self.within, self.depth)
        try:
            while True:
                await self.step()
        finally:
            for task in list(self.inflight):  # cut short: never committed, delivered again
                task.cancel()
            await asyncio.gather(*self.inflight, return_exceptions=True)
            await asyncio.shield(consumer.stop())  # leaves the group; commits nothing more

    async def step(self) -> int:
        """Gather one batch and start its write (at most ``depth`` in flight: the next batch is
        read and parsed while one is written); return how many records it held."""
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
        """Write one batch, then (after the batch before it) commit its offsets; True if done."""
        await self.boundary.run_batch(self.batch, self.single, [
            Record(r.topic, r.partition, r.offset, r.key, r.value or b"") for r in records])
        if previous is not None:
            await asyncio.wait({previous})  # offsets are committed in order
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                return False  # the one before was cut short: committing past it would skip it
        await self.commit(records)
        return True

    async def gather(self, consumer: AIOKafkaConsumer) -> list[Any]:
        """Up to ``size`` records: what is fetched already, or what comes within ``within`` s."""
        deadline = time.monotonic() + self.within
        while len(self.gathered) < self.size:
            left = deadline - time.monotonic()
            if left <= 0 and self.gathered:
                break
            fetched = await consumer.getmany(timeout_ms=max(0, int(left * 1000)),
                                             max_records=self.size - len(self.gathered))
            for tp_records in fetched.values():
                self.gathered.extend(tp_records)
            if not fetched and left <= 0:
                break
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
            log.warning("archive: commit of a written batch refused (%s); its records come again "
                        "(appends are idempotent)", type(exc).__name__)
            return
        except KafkaError as exc:  # the broker does not answer: the next commit covers these
            log.warning("archive: commit failed (%s); the next batch's commit covers it",
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
