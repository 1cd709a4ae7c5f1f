"""The SLA monitor over its store, the fake and a real Redis: alerts as time passes, two
instances, a flush, a policy change. Each test runs against both (tests/test_contract_sla).

Time is a fixed clock moved by the test; the publisher records what would go to
complaints.sla. The broker path (processes, kill -9) is in test_sla_kafka.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope
from schemas.events import CaseAction, Severity, SlaEvent
from services.common.policy import load_policy
from services.sla_monitor.facts import facts_of
from services.sla_monitor.handlers import Monitor
from services.sla_monitor.metrics import SlaMetrics
from services.sla_monitor.ports import Store
from services.sla_monitor.settings import SlaMonitorSettings
from tests.fakes import FixedClock, RecordingPublisher
from tests.test_contract_sla import BACKENDS, Backend, open_backend
from tests.test_sla_logic import CALENDARS, T0, H, M, action, routed

POLICY = load_policy()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return open_backend(request)


class World:
    """Monitor instances sharing one store, one clock and one 'topic' of inputs."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.clock = FixedClock(T0)
        self.inputs: list[Envelope] = []   # what the input topics hold
        self.published: list[SlaEvent] = []  # what complaints.sla holds, every instance

    def store(self) -> Store:
        return self.backend.store()

    def monitor(self) -> Monitor:
        world = self

        class Publisher(RecordingPublisher):
            async def publish(self, topic: Any, event: Envelope) -> None:
                world.published.append(event)  # type: ignore[arg-type]

        def read(topic: str) -> list[dict[str, object]]:
            source = self.published if topic == "complaints.sla" else [
                e for e in self.inputs if _topic(e) == topic]
            return [e.model_dump(mode="json") for e in source]

        monitor = Monitor(settings=SlaMonitorSettings(), policy=POLICY, publisher=Publisher(),
                          store=self.store(), clock=self.clock,
                          metrics=SlaMetrics.create(CollectorRegistry()), calendars=CALENDARS,
                          read=read)
        monitor.whole = True  # as after its first scan of a whole store
        return monitor

    async def feed(self, monitor: Monitor, event: Envelope) -> None:
        self.inputs.append(event)
        handler = {"complaint.routed": monitor.on_routed, "case.updated": monitor.on_case_event,
                   "notification.recorded": monitor.on_notification}[event.type]
        await handler(None, event.to_bytes())

    def alert_keys(self) -> Counter[str]:
        """How often each distinct alert id was published."""
        return Counter(e.id for e in self.published)


def _topic(event: Envelope) -> str:
    return {"complaint.routed": "complaints.routed", "case.updated": "complaints.lifecycle",
            "notification.recorded": "complaints.notifications"}[event.type]


def run(backend: Backend, scenario: Callable[[World], Awaitable[None]]) -> None:
    async def main() -> None:
        world = World(backend)
        try:
            await world.store().mark_whole()
            await scenario(world)
        finally:
            await backend.close()
    asyncio.run(main())


def complaint(n: int, severity: Severity = Severity.general):  # type: ignore[no-untyped-def]
    event = routed(severity)
    data = event.data.model_copy(update={"complaint_id": f"C{n}"})
    return event.model_copy(update={"id": f"routed-C{n}", "subject": f"C{n}", "data": data})


def test_facts_are_recorded_once_and_alerts_are_claimed_once(backend: Backend) -> None:
    async def scenario(world: World) -> None:
        store = world.store()
        facts = facts_of(routed())
        first = await store.record("C", facts, None)
        again = await store.record("C", facts, None)
        assert len(first.facts) == len(again.facts) == 3 and first.version == again.version
        assert await store.claim_alerts("C", ["a1", "a2"], token="x", lease=30) == {"a1": "mine", "a2": "mine"}
        assert await store.claim_alerts("C", ["a1"], token="y", lease=30) == {"a1": "busy"}
        assert await store.claim_alerts("C", ["a1"], token="y", lease=0.0) == {"a1": "mine"}  # lease over
        await store.mark_sent("C", ["a1"])
        assert await store.claim_alerts("C", ["a1", "a2"], token="x", lease=30) == {"a1": "sent", "a2": "mine"}
        # a schedule computed from an older view is ignored
        snap = await store.snapshot("C")
        await store.record("C", facts_of(action(CaseAction.acknowledged, T0 + M)), None)
        assert await store.schedule(snap, next_due=1.0, deadline=None) is False
    run(backend, scenario)


def test_warnings_and_breach_go_out_once_each_as_time_passes(backend: Backend) -> None:
    async def scenario(world: World) -> None:
        monitor = world.monitor()
        await world.feed(monitor, complaint(1))
        for minutes in (10, 31, 31, 49, 61, 61, 200):
            world.clock.now = T0 + minutes * M
            await monitor.tick()
        respond = sorted((e.data.outcome.value, e.data.threshold) for e in world.published
                         if e.data.milestone.value == "respond")
        assert respond == [("breached", None), ("started", None), ("warning", 0.5), ("warning", 0.8)]
        assert set(world.alert_keys().values()) == {1}
        breach = next(e for e in world.published if e.data.outcome.value == "breached"
                      and e.data.milestone.value == "respond")
        assert breach.data.due_at == T0 + H and breach.data.policy_version == POLICY.version
    run(backend, scenario)


def test_two_instances_share_the_work_and_publish_each_alert_once(backend: Backend) -> None:
    async def scenario(world: World) -> None:
        a, b = world.monitor(), world.monitor()
        # Given 60 complaints, every input delivered to both instances at once
        events = [complaint(n) for n in range(60)]
        await asyncio.gather(*(world.feed(m, e) for e in events for m in (a, b)))
        # And half of them handled in time, delivered to both again
        acks = [action(CaseAction.acknowledged, T0 + 20 * M).model_copy(
            update={"id": f"ack-C{n}", "subject": f"C{n}",
                    "data": action(CaseAction.acknowledged, T0 + 20 * M).data.model_copy(
                        update={"complaint_id": f"C{n}"})}) for n in range(0, 60, 2)]
        world.clock.now = T0 + 21 * M
        await asyncio.gather(*(world.feed(m, e) for e in acks for m in (a, b)))
        # When both scan for due alerts, concurrently, as time passes
        for minutes in (31, 49, 61, 125, 125):
            world.clock.now = T0 + minutes * M
            await asyncio.gather(a.tick(), b.tick())
        # Then every alert went out exactly once
        counts = world.alert_keys()
        assert set(counts.values()) == {1}, [k for k, n in counts.items() if n > 1]
        by = Counter((e.data.milestone.value, e.data.outcome.value) for e in world.published)
        assert by[("respond", "breached")] == 30 and by[("respond", "met")] == 30
        assert by[("respond", "started")] == 60
    run(backend, scenario)


def test_after_redis_loses_the_keys_the_monitor_rebuilds_them_and_repeats_nothing(
        backend: Backend) -> None:
    async def scenario(world: World) -> None:
        monitor = world.monitor()
        for n in range(20):
            await world.feed(monitor, complaint(n))
        world.clock.now = T0 + 40 * M
        await monitor.tick()
        before = world.alert_keys()
        # When every key of the monitor is deleted mid-run
        await world.backend.lose()
        # And a complaint is acknowledged while the store is empty
        late = action(CaseAction.acknowledged, T0 + 41 * M).model_copy(
            update={"id": "ack-C3", "subject": "C3", "data": action(
                CaseAction.acknowledged, T0 + 41 * M).data.model_copy(update={"complaint_id": "C3"})})
        world.clock.now = T0 + 41 * M
        await world.feed(monitor, late)
        # Then the next scan rebuilds from the topics, and nothing goes out twice
        await monitor.tick()
        assert monitor.metrics.rebuilds._value.get() == 1  # type: ignore[attr-defined]
        world.clock.now = T0 + 70 * M
        await monitor.tick()
        await monitor.tick()
        after = world.alert_keys()
        assert set(after.values()) == {1}
        assert set(before) <= set(after)
        outcomes = Counter((e.data.milestone.value, e.data.outcome.value) for e in world.published)
        # every complaint but C3 breached respond once; C3 met it in time
        assert outcomes[("respond", "breached")] == 19 + 0 and outcomes[("respond", "met")] == 1
    run(backend, scenario)


def test_a_policy_change_applies_to_new_complaints_only(backend: Backend) -> None:
    async def scenario(world: World) -> None:
        old = world.monitor()
        await world.feed(old, complaint(1))
        # When the monitor restarts under a new policy version with a 2-hour respond target
        raw = POLICY.model_dump()
        raw["version"] = "2026.12-tighter"
        raw["sla"]["milestones"]["respond"]["targets"]["general"] = timedelta(hours=2)
        new = world.monitor()
        new.policy = type(POLICY).model_validate(raw)
        await world.feed(new, complaint(2))
        world.clock.now = T0 + 90 * M
        await new.tick()
        await new.tick()
        # Then the complaint routed before keeps its 1-hour target and names the old version
        breached = {e.data.complaint_id: e.data for e in world.published
                    if e.data.milestone.value == "respond" and e.data.outcome.value == "breached"}
        assert set(breached) == {"C1"} and breached["C1"].policy_version == POLICY.version
        started = {e.data.complaint_id: e.data for e in world.published
                   if e.data.milestone.value == "respond" and e.data.outcome.value == "started"}
        assert started["C2"].policy_version == "2026.12-tighter"
        assert started["C2"].deadline == T0 + 2 * H
    run(backend, scenario)


def test_events_before_the_first_scan_are_evaluated_by_it(backend: Backend) -> None:
    async def scenario(world: World) -> None:
        monitor = world.monitor()
        monitor.whole = False  # just started: the store is not yet known whole
        await world.feed(monitor, complaint(1))
        assert world.published == []  # recorded, nothing emitted from a store it has not checked
        await monitor.tick()  # finds the epoch: whole; evaluates what arrived meanwhile
        await monitor.tick()
        assert {(e.data.milestone.value, e.data.outcome.value) for e in world.published} >= {
            ("respond", "started"), ("acknowledge", "started")}
    run(backend, scenario)


def test_a_complaint_without_clocks_leaves_the_schedule(backend: Backend) -> None:
    async def scenario(world: World) -> None:
        monitor = world.monitor()
        monitor.whole = False
        # a case event of a complaint not routed yet, recorded before the first scan
        await world.feed(monitor, action(CaseAction.acknowledged, T0))
        await monitor.tick()
        assert await world.backend.queued() == (0, 0) and world.published == []
    run(backend, scenario)
