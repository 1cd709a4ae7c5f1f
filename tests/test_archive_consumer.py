"""The archive's batch consumer on a real broker (the run's kind, tests.conftest.own_broker): batches,
commits, retries, dead letters, the lag it reports and a rebalance while a batch is being written."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope
from schemas.topics import LIFECYCLE, REGISTERED, TopicSpec
from services.common.boundary import Boundary, Record
from services.common.consumer import BatchConsumer, batched
from services.common.settings import CommonSettings
from tests.conftest import own_broker

pytestmark = pytest.mark.integration
SPECS = (REGISTERED, LIFECYCLE)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    with own_broker(tmp_path) as bootstrap:
        yield bootstrap


class Letters:
    """A publisher keeping the dead letters."""

    def __init__(self) -> None:
        self.letters: list[Envelope] = []

    async def publish(self, topic: TopicSpec, event: Envelope) -> None:
        self.letters.append(event)

    async def publish_many(self, topic: TopicSpec, events: Sequence[Envelope]) -> None:
        self.letters.extend(events)


class Sink:
    """A batch handler recording what it wrote; ``b"bad"`` is bad input; may fail or block."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.written: list[tuple[str, int, int]] = []
        self.batches = 0
        self.fail_first = fail_first
        self.gate: asyncio.Event | None = None  # while set to an unset event, a batch waits on it
        self.entered = asyncio.Event()

    async def batch(self, records: list[Record]) -> list[BaseException | None]:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_first:
            self.fail_first -= 1
            raise ConnectionError("database down")
        self.batches += 1
        out: list[BaseException | None] = []
        for r in records:
            if r.value == b"bad":
                out.append(ValueError("unreadable"))
            else:
                self.written.append((r.topic, r.partition, r.offset))
                out.append(None)
        return out

    async def single(self, key: bytes | None, value: bytes) -> None:
        raise AssertionError("no record-at-a-time fallback expected")


def settings(bootstrap: str) -> CommonSettings:
    return CommonSettings.model_validate({"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                                          "KAFKA_REBALANCE_TIMEOUT": "6", "OUTAGE_MAX_BACKOFF": "0.2"})


def consumer(bootstrap: str, sink: Sink, letters: Letters, group: str, *, size: int = 100) -> BatchConsumer:
    boundary = Boundary(service="archive", publisher=letters, registry=CollectorRegistry(),
                        settings=settings(bootstrap))
    return BatchConsumer(settings=settings(bootstrap), group_id=group,
                         handle=batched(boundary, sink.batch, sink.single), specs=SPECS, size=size,
                         within=0.2, fetch_ahead=1000)


def produce(bootstrap: str, n: int, *, bad: int | None = None, prefix: str = "k") -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for i in range(n):
            spec = SPECS[i % 2]
            producer.send(spec.name, key=f"{prefix}{i % 17}".encode(),
                          value=b"bad" if i == bad else f'{{"n": {i}}}'.encode())
        producer.flush()
    finally:
        producer.close()


async def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The group's committed offsets and the end offsets, per partition of the topics."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        tps = [TopicPartition(s.name, p) for s in SPECS for p in range(s.partitions)]
        return {tp: (await reader.committed(tp)) or 0 for tp in tps}
    finally:
        await reader.stop()


async def ends(bootstrap: str) -> dict[TopicPartition, int]:
    """Each partition's offset after its last record, as read (tansu's ListOffsets counts batches)."""
    reader = AIOKafkaConsumer(*(s.name for s in SPECS), bootstrap_servers=bootstrap, group_id=None,
                              auto_offset_reset="earliest")
    await reader.start()
    out = {TopicPartition(s.name, p): 0 for s in SPECS for p in range(s.partitions)}
    try:
        while got := await reader.getmany(timeout_ms=2000):
            for tp, records in got.items():
                out[tp] = max(out[tp], records[-1].offset + 1)
    finally:
        await reader.stop()
    return out


async def until(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)  # polling with a deadline


def test_batches_are_written_then_committed_retried_and_bad_records_dead_lettered(broker: str) -> None:
    async def scenario() -> None:
        # Given 400 records on two topics, one of them unreadable, and a database down at first
        produce(broker, 400, bad=123)
        sink, letters = Sink(fail_first=2), Letters()
        c = consumer(broker, sink, letters, "archive-test-1")
        task = asyncio.create_task(c.run())
        try:
            # When the consumer runs
            await until(lambda: len(sink.written) >= 399, timeout=60, what="every good record")
            await until(lambda: sum(c.lag().values()) == 0, timeout=30, what="no lag")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # Then every good record was written once (the failing batches retried, never skipped)
        assert len(sink.written) == len(set(sink.written)) == 399
        assert sink.batches < 399  # in batches, not one by one
        # and the unreadable one dead-lettered with its reason, not written
        topic, partition, offset = where_bad(broker)
        assert [(e.data.source, e.data.reason) for e in letters.letters] == [
            (f"{topic}:{partition}:{offset}", "ValueError: unreadable")]
        # and the group's offsets are committed to the end: a restart reads nothing again
        assert await committed(broker, "archive-test-1") == await ends(broker)

    asyncio.run(scenario())


def where_bad(bootstrap: str) -> tuple[str, int, int]:
    from kafka import KafkaConsumer

    reader = KafkaConsumer(LIFECYCLE.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                           consumer_timeout_ms=5000, group_id=None)
    try:
        for m in reader:
            if m.value == b"bad":
                return m.topic, m.partition, m.offset
    finally:
        reader.close()
    raise AssertionError("the bad record is not on the topic")


def test_a_rebalance_commits_the_batch_being_written_and_drops_the_rest(broker: str) -> None:
    async def scenario() -> None:
        # Given a consumer writing a batch that waits (a slow database), with more records fetched
        produce(broker, 600)
        first, letters = Sink(), Letters()
        first.gate = asyncio.Event()
        one = consumer(broker, first, letters, "archive-test-2", size=50)
        t1 = asyncio.create_task(one.run())
        second = Sink()
        two = consumer(broker, second, letters, "archive-test-2", size=50)
        t2: asyncio.Task[None] | None = None
        try:
            await until(first.entered.is_set, timeout=60, what="the first batch")
            # When a second member joins the group while that batch is being written
            t2 = asyncio.create_task(two.run())
            # Then the revocation waits for the batch being written
            await until(lambda: one.revoking is not None, timeout=30, what="the revocation to begin")
            assert one.inflight and not first.written
            first.gate.set()  # the write ends
            await until(lambda: one.rebalances >= 1 and one.revoking is None, timeout=60,
                        what="the revocation to end")
            written_before = set(first.written)
            # and the batch written was committed before the partitions went (below: never
            # written again), the records gathered but not written dropped
            assert written_before and not one.gathered
            # And together the two members write every record; none is lost
            await until(lambda: len(set(first.written) | set(second.written)) == 600, timeout=90,
                        what="every record written by one member or the other")
            await until(lambda: sum(one.lag().values()) + sum(two.lag().values()) == 0, timeout=30,
                        what="no lag")
        finally:
            for t in (t1, t2):
                if t is not None:
                    t.cancel()
            await asyncio.gather(*(t for t in (t1, t2) if t is not None), return_exceptions=True)
        offsets = await committed(broker, "archive-test-2")
        assert offsets == await ends(broker)
        # a record written by both was redelivered, never one the first had committed
        both = set(first.written) & set(second.written)
        for topic, partition, offset in written_before:
            assert (topic, partition, offset) not in both

    asyncio.run(scenario())
