"""``Keyed``, the batch consumer's hand-out of records to a service's record handlers (pure
asyncio, no broker): a complaint's records in order, also across batches in flight; different
complaints at once, bounded; a bad record dead-lettered without holding up the others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import faust
from prometheus_client import CollectorRegistry

from schemas.topics import LIFECYCLE, REGISTERED, ROUTED
from services.common.boundary import Boundary, Record
from services.common.consumer import Keyed, inputs
from services.common.settings import CommonSettings
from tests.fakes.common import RecordingPublisher

Handler = Callable[[bytes | None, bytes], Awaitable[None]]


class Log:
    """Record handlers that note what they ran, may wait on a gate per value, and count overlap."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, bytes]] = []
        self.gates: dict[bytes, asyncio.Event] = {}
        self.started: dict[bytes, asyncio.Event] = {}
        self.running = self.most = 0

    def handler(self, topic: str) -> Handler:
        async def handle(key: bytes | None, value: bytes) -> None:
            self.started.setdefault(value, asyncio.Event()).set()
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                if value == b"bad":
                    raise ValueError("unreadable")
                if value in self.gates:
                    await self.gates[value].wait()
                await asyncio.sleep(0)  # a handler awaits something (Redis): let others in
                self.ran.append((topic, value))
            finally:
                self.running -= 1

        return handle

    async def until_started(self, value: bytes) -> None:
        await asyncio.wait_for(self.started.setdefault(value, asyncio.Event()).wait(), 5)


def keyed(log: Log, *, concurrency: int = 8) -> tuple[Keyed, RecordingPublisher]:
    letters = RecordingPublisher()
    boundary = Boundary(service="test", publisher=letters, registry=CollectorRegistry(),
                        settings=CommonSettings())
    handlers = {spec: log.handler(spec.name) for spec in (REGISTERED, ROUTED, LIFECYCLE)}
    return Keyed(boundary, handlers, concurrency=concurrency), letters


def rec(topic: str, offset: int, key: str, value: str) -> Record:
    return Record(topic, 0, offset, key.encode(), value.encode())


def test_a_complaints_records_run_in_topic_order_and_offset_order() -> None:
    async def scenario() -> None:
        log = Log()
        handle, _ = keyed(log)
        # Given a batch where a complaint's routing was fetched before its registration
        await handle([rec(LIFECYCLE.name, 5, "c1", "closed"), rec(ROUTED.name, 3, "c1", "routed"),
                      rec(LIFECYCLE.name, 6, "c1", "reopened"), rec(REGISTERED.name, 9, "c1", "registered")])
        # Then the registration ran first, then the routing, then the lifecycle in offset order
        assert [v for _, v in log.ran] == [b"registered", b"routed", b"closed", b"reopened"]

    asyncio.run(scenario())


def test_other_complaints_go_on_while_one_waits_and_the_batch_ends_after_all() -> None:
    async def scenario() -> None:
        log = Log()
        log.gates[b"slow"] = asyncio.Event()
        handle, _ = keyed(log)
        # Given a batch where one complaint's handler waits (a slow dependency)
        batch = asyncio.create_task(handle([rec(REGISTERED.name, 0, "c1", "slow"),
                                            rec(REGISTERED.name, 1, "c2", "a"),
                                            rec(REGISTERED.name, 2, "c3", "b")]))
        await log.until_started(b"slow")
        # Then the other complaints were handled meanwhile, and the batch is not done
        await asyncio.wait_for(_until(lambda: len(log.ran) == 2), 5)
        assert sorted(v for _, v in log.ran) == [b"a", b"b"]
        assert not batch.done()
        log.gates[b"slow"].set()
        await asyncio.wait_for(batch, 5)
        assert sorted(v for _, v in log.ran) == [b"a", b"b", b"slow"]

    asyncio.run(scenario())


def test_a_complaints_record_in_a_later_batch_waits_for_its_earlier_one() -> None:
    async def scenario() -> None:
        log = Log()
        log.gates[b"first"] = asyncio.Event()
        handle, _ = keyed(log)
        # Given two batches in flight, both with records of complaint c1
        one = asyncio.create_task(handle([rec(REGISTERED.name, 0, "c1", "first")]))
        await log.until_started(b"first")
        two = asyncio.create_task(handle([rec(ROUTED.name, 0, "c1", "second"),
                                          rec(ROUTED.name, 1, "c2", "other")]))
        await asyncio.wait_for(_until(lambda: (ROUTED.name, b"other") in log.ran), 5)
        # Then the later batch's record of c1 waits for the earlier one; c2's did not wait
        assert b"second" not in log.started
        log.gates[b"first"].set()
        await asyncio.wait_for(asyncio.gather(one, two), 5)
        assert [v for _, v in log.ran if v != b"other"] == [b"first", b"second"]
        assert not handle.tails  # the chains are gone once done

    asyncio.run(scenario())


def test_at_most_concurrency_records_run_at_once() -> None:
    async def scenario() -> None:
        log = Log()
        handle, _ = keyed(log, concurrency=3)
        # Given 40 complaints in one batch
        await handle([rec(REGISTERED.name, i, f"c{i}", f"v{i}") for i in range(40)])
        # Then every one ran, never more than three at once, and more than one at once
        assert len(log.ran) == 40
        assert log.most == 3

    asyncio.run(scenario())


def test_a_bad_record_is_dead_lettered_and_the_rest_of_its_complaint_goes_on() -> None:
    async def scenario() -> None:
        log = Log()
        handle, letters = keyed(log)
        await handle([rec(REGISTERED.name, 0, "c1", "bad"), rec(ROUTED.name, 1, "c1", "routed")])
        assert [v for _, v in log.ran] == [b"routed"]
        assert [(e.data.source, e.data.reason) for _, e in letters.published] == [
            (f"{REGISTERED.name}:0:0", "ValueError: unreadable")]

    asyncio.run(scenario())


def test_a_batch_cut_short_cancels_its_records() -> None:
    async def scenario() -> None:
        log = Log()
        log.gates[b"stuck"] = asyncio.Event()
        handle, _ = keyed(log)
        batch = asyncio.create_task(handle([rec(REGISTERED.name, 0, "c1", "stuck")]))
        await log.until_started(b"stuck")
        # When the batch is cancelled (a stop), Then its record's handler is cancelled too
        batch.cancel()
        await asyncio.gather(batch, return_exceptions=True)
        # (the batch ends only once its handlers have)
        assert log.running == 0 and not handle.tails

    asyncio.run(scenario())


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0)


def wired(tmp_path: Path, consumer: str) -> faust.App:
    from services.common.consumer import consume
    from services.common.runtime import make_app

    settings = CommonSettings.model_validate({"COMPLAINTS_DATA_DIR": str(tmp_path), "KAFKA_CONSUMER": consumer})
    app = make_app("wiring", settings, web_port=18999)  # never served here
    boundary = Boundary(service="wiring", publisher=RecordingPublisher(), registry=CollectorRegistry(),
                        settings=settings)
    log = Log()
    lag = consume(app, settings, boundary, {REGISTERED: log.handler("r"), ROUTED: log.handler("o")})
    assert (lag is None) == (consumer == "faust")
    return app


def test_the_batch_consumer_stands_in_for_fausts_and_faust_stays_a_choice(tmp_path: Path) -> None:
    # Given the default (KAFKA_CONSUMER=batch): one batch consumer in faust's group, faust's own off
    app = wired(tmp_path, "batch")
    assert not app.agents and not app.boot_strategy.enable_kafka_consumer
    assert app.batch_consumer.group_id == "complaints-wiring"  # type: ignore[attr-defined]
    assert app.batch_consumer.depth == 8  # type: ignore[attr-defined]  # CONSUMER_BATCHES_IN_FLIGHT
    assert inputs(app) == {REGISTERED.name, ROUTED.name}
    # Given KAFKA_CONSUMER=faust: an agent per topic, named after it, as before
    app = wired(tmp_path, "faust")
    assert sorted(app.agents) == ["wiring.registered", "wiring.routed"]
    assert not hasattr(app, "batch_consumer") and app.boot_strategy.enable_kafka_consumer is not False
    assert inputs(app) == {REGISTERED.name, ROUTED.name}
