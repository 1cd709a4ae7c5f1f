"""The Router over its ports: booking, release, escalation once, two instances, conflicts.

Every scenario runs against the fakes (tests/fakes/router.py) and against a real Redis,
where each has a key prefix of its own, so handler loads start at zero. The publisher
records what would go to complaints.routed; the broker path is in test_router_kafka.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope
from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Channel,
    Complaint,
    ComplaintRegistered,
    ComplaintRouted,
    Contact,
    DecisionKind,
    Level,
    Milestone,
    RoutingDecision,
    Severity,
    SlaAlert,
    SlaEvent,
    SlaOutcome,
)
from services.common.errors import Rejected
from services.common.policy import load_policy
from services.router.adapters import RedisCases, RedisFirstContacts
from services.router.handlers import Router
from services.router.metrics import RouterMetrics
from services.router.ports import Cases, FirstContacts
from services.router.roster import load_roster
from services.router.taxonomy import load_taxonomy
from tests.fakes import DictCases, DictFirstContacts, FixedClock, RecordingPublisher

POLICY = load_policy()
TAXONOMY = load_taxonomy()
ROSTER = load_roster()
MONDAY_10_SHANGHAI = datetime(2026, 11, 23, 2, tzinfo=UTC)  # day shift: quality-l1-01, -02


def make_router(first_contacts: FirstContacts, cases: Cases) -> tuple[Router, RecordingPublisher]:
    publisher = RecordingPublisher()
    router = Router(policy=POLICY, taxonomy=TAXONOMY, roster=ROSTER, publisher=publisher,
                    first_contacts=first_contacts, cases=cases, clock=FixedClock(MONDAY_10_SHANGHAI),
                    metrics=RouterMetrics.create(CollectorRegistry()))
    return router, publisher


Instance = Callable[[], tuple[Router, RecordingPublisher, Cases]]
Scenario = Callable[[Instance], Coroutine[Any, Any, None]]
Run = Callable[[Scenario], None]


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.integration)])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario with a factory of router instances sharing one state: the fakes, or
    a Redis prefix of the scenario's own with each instance on its own connection."""
    if request.param == "fake":
        def run_fake(scenario: Scenario) -> None:
            first_contacts, cases = DictFirstContacts(), DictCases()

            def instance() -> tuple[Router, RecordingPublisher, Cases]:
                return (*make_router(first_contacts, cases), cases)

            asyncio.run(scenario(instance))
        return run_fake
    redis_url, redis_prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")

    def run_redis(scenario: Scenario) -> None:
        async def main() -> None:
            prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
            clients: list[aioredis.Redis] = []

            def instance() -> tuple[Router, RecordingPublisher, Cases]:
                client = aioredis.from_url(redis_url)
                clients.append(client)
                cases = RedisCases(client, prefix=prefix, ttl_seconds=3600)
                return (*make_router(RedisFirstContacts(client, prefix=prefix), cases), cases)

            try:
                await scenario(instance)
            finally:
                for client in clients:
                    await client.aclose()
        asyncio.run(main())
    return run_redis


def registered(n: int, text: str = "The screen is broken and cracked, clearly a defect",
               customer: str | None = None) -> ComplaintRegistered:
    cid = f"261123-{n:010d}"
    c = Complaint(complaint_id=cid, channel=Channel.web_form, received_at=MONDAY_10_SHANGHAI,
                  source_message_id=f"m{n}", customer=Contact(), customer_key=customer or f"cust-{n}",
                  first_contact="web-desk", subject=text[:40], description=text)
    return ComplaintRegistered.new(c, source="intake", time=MONDAY_10_SHANGHAI, subject=cid)


def case_event(cid: str, action: CaseAction, *, cause: Envelope | None = None,
               **fields: Any) -> CaseEvent:
    update = CaseUpdate(complaint_id=cid, action=action, actor=fields.pop("actor", "customer"), **fields)
    return CaseEvent.new(update, source="intake", time=MONDAY_10_SHANGHAI, subject=cid, cause=cause)


def breach(cid: str, milestone: Milestone = Milestone.respond, *, event_id: str | None = None) -> SlaEvent:
    alert = SlaAlert(complaint_id=cid, milestone=milestone, outcome=SlaOutcome.breached,
                     severity=Severity.general, started_at=MONDAY_10_SHANGHAI,
                     deadline=MONDAY_10_SHANGHAI + timedelta(hours=1),
                     observed_at=MONDAY_10_SHANGHAI + timedelta(hours=1), on_time=False,
                     policy_version="t", notify=["first_contact_owner"])
    return SlaEvent.new(alert, id=event_id, source="sla-monitor", time=MONDAY_10_SHANGHAI, subject=cid)


def decisions(publisher: RecordingPublisher, cid: str) -> list[RoutingDecision]:
    """Distinct decisions for ``cid`` in revision order (republished duplicates collapse)."""
    seen: dict[str, RoutingDecision] = {}
    for e in publisher.of_type("complaint.routed"):
        if e.subject == cid:
            seen.setdefault(e.id, e.data)
    return sorted(seen.values(), key=lambda d: d.revision)


def test_each_case_goes_to_the_least_loaded_on_duty_handler(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        router, publisher, cases = instance()
        # Given three quality complaints on Monday morning (two L1 handlers on the day shift)
        for n in range(3):
            await router.on_registered(None, registered(n).to_bytes())
        handlers = [decisions(publisher, f"261123-{n:010d}")[0].handler for n in range(3)]
        # Then they alternate between the two, and the loads say so
        assert handlers == ["quality-l1-01", "quality-l1-02", "quality-l1-01"]
        assert await cases.loads() == {"quality-l1-01": 2, "quality-l1-02": 1}
        first = decisions(publisher, "261123-0000000000")[0]
        assert "least loaded (0 open) of 2 on-duty L1 handlers of quality" in " ".join(first.reasons)
        # When the first is resolved (twice: a redelivery) and then closed
        resolved = case_event(first.complaint_id, CaseAction.resolved, actor="quality-l1-01", result="ok")
        await router.on_case_event(None, resolved.to_bytes())
        await router.on_case_event(None, resolved.to_bytes())
        await router.on_case_event(None, case_event(first.complaint_id, CaseAction.closed,
                                                    actor="quality-l1-01").to_bytes())
        # Then its handler's load is released exactly once
        assert await cases.loads() == {"quality-l1-01": 1, "quality-l1-02": 1}
    run(scenario)


def test_escalation_climbs_once_per_trigger_up_to_the_ceiling(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        router, publisher, cases = instance()
        reg = registered(1)
        cid = reg.data.complaint_id
        await router.on_registered(None, reg.to_bytes())
        # When the acknowledge deadline is breached: the alert redelivered, and emitted
        # again under another id for the same deadline
        first = breach(cid)
        for event in (first, first, breach(cid, event_id="another-id")):
            await router.on_sla(None, event.to_bytes())
        # And the customer answers dissatisfied, which reopens the case (caused by that answer)
        unhappy = case_event(cid, CaseAction.satisfaction, score=1)
        await router.on_case_event(None, unhappy.to_bytes())
        await router.on_case_event(None, case_event(cid, CaseAction.reopened, cause=unhappy).to_bytes())
        # Then: routed L1, escalated to L2 (breach), to L3 (dissatisfied); the reopen was
        # the same trigger as the answer
        ds = decisions(publisher, cid)
        assert [(d.revision, d.decision, d.level) for d in ds] == [
            (1, DecisionKind.routed, Level.L1), (2, DecisionKind.escalated, Level.L2),
            (3, DecisionKind.escalated, Level.L3)]
        assert ds[1].trigger == "sla_breach:respond" and ds[1].notify == ["department_head"]
        assert ds[1].handler and ds[1].handler.startswith("quality-l2-")
        assert ds[2].trigger == "dissatisfied" and ds[2].notify == ["executives"]
        assert ds[2].handler == "quality-l3-01"
        # And the load moved with the case: one open case, held at L3
        assert await cases.loads() == {"quality-l3-01": 1}
        # When it is resolved, then reopened by the customer once more
        await router.on_case_event(None, case_event(cid, CaseAction.resolved, actor="x", result="ok").to_bytes())
        assert await cases.loads() == {}
        await router.on_case_event(None, case_event(cid, CaseAction.reopened).to_bytes())
        # Then L3 is the ceiling: executives are told, the level stays, a handler is booked again
        last = decisions(publisher, cid)[-1]
        assert (last.revision, last.decision, last.level, last.notify) == (
            4, DecisionKind.at_ceiling, Level.L3, ["executives"])
        assert last.handler == "quality-l3-01" and await cases.loads() == {"quality-l3-01": 1}
        # And a satisfied answer escalates nothing
        await router.on_case_event(None, case_event(cid, CaseAction.satisfaction, score=5).to_bytes())
        assert len(decisions(publisher, cid)) == 4
    run(scenario)


def test_a_low_confidence_case_waits_for_review_and_reclassification_reroutes_it(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        router, publisher, cases = instance()
        reg = registered(7, text="I am not happy with what happened last week")
        await router.on_registered(None, reg.to_bytes())
        first = decisions(publisher, reg.data.complaint_id)[0]
        assert first.review and first.department == "complaint_review"
        assert first.handler is not None and first.handler.startswith("complaint-review-l1-")
        # When a reviewer reclassifies it (delivered twice)
        event = case_event(reg.data.complaint_id, CaseAction.reclassified, actor="reviewer-7", code="PB-01")
        for _ in range(2):
            await router.on_case_event(None, event.to_bytes())
        ds = decisions(publisher, reg.data.complaint_id)
        assert [d.decision for d in ds] == [DecisionKind.routed, DecisionKind.reclassified]
        assert (ds[1].code, ds[1].department, ds[1].review) == ("PB-01", "billing", False)
        # Then the reviewer's queue is released and a billing handler holds the case
        assert await cases.loads() == {ds[1].handler: 1}
        assert ds[1].handler is not None and ds[1].handler.startswith("billing-l1-")
    run(scenario)


def test_two_router_instances_never_double_book(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        (a, pub_a, cases), (b, pub_b, _) = instance(), instance()
        regs = [registered(n) for n in range(100)]
        # Given every registration delivered to both instances at once (a rebalance
        # redelivers what the other one was handling)
        # (at most 16 at a time per instance, as with agent concurrency)
        limits = {id(a): asyncio.Semaphore(16), id(b): asyncio.Semaphore(16)}

        async def deliver(router: Router, reg: ComplaintRegistered) -> None:
            async with limits[id(router)]:
                await router.on_registered(None, reg.to_bytes())

        await asyncio.gather(*[deliver(r, reg) for reg in regs for r in (a, b)])
        # Then each complaint has exactly one first decision, the same from both instances
        by_id: dict[str, set[str]] = {}
        for _, e in pub_a.published + pub_b.published:
            by_id.setdefault(e.subject or "", set()).add(e.model_dump_json())
        assert len(by_id) == 100 and all(len(v) == 1 for v in by_id.values())
        # And the loads count each case once, spread evenly over the two on-duty handlers
        handlers = Counter(ComplaintRouted.model_validate_json(next(iter(v))).data.handler
                           for v in by_id.values())
        # up to their capacity (40 each in the shipped roster); the rest wait in the queue
        loads = await cases.loads()
        assert loads == {"quality-l1-01": 40, "quality-l1-02": 40}
        assert handlers == Counter({"quality-l1-01": 40, "quality-l1-02": 40, None: 20})
    run(scenario)


def test_concurrent_triggers_for_one_case_on_two_instances_are_applied_in_turn(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        (a, pub_a, cases), (b, pub_b, _) = instance(), instance()
        reg = registered(3)
        await a.on_registered(None, reg.to_bytes())
        # When two different escalation triggers arrive at the same moment on two instances
        await asyncio.gather(
            a.on_sla(None, breach(reg.data.complaint_id).to_bytes()),
            b.on_case_event(None, case_event(reg.data.complaint_id, CaseAction.satisfaction,
                                             score=1).to_bytes()))
        # Then both apply, one after the other: revisions 2 and 3, L1 -> L2 -> L3
        ds = sorted({e.id: e.data for _, e in pub_a.published + pub_b.published}.values(),
                    key=lambda d: d.revision)
        assert [(d.revision, d.level) for d in ds] == [(1, Level.L1), (2, Level.L2), (3, Level.L3)]
        assert sum((await cases.loads()).values()) == 1
    run(scenario)


def test_a_trigger_for_an_unknown_case_is_ignored(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        router, publisher, _ = instance()
        await router.on_sla(None, breach("261123-9999999999").to_bytes())
        assert publisher.published == []
    run(scenario)


def test_a_repeat_complaint_keeps_the_first_contact_owner(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        router, publisher, _ = instance()
        first, second = registered(10, customer="same"), registered(11, customer="same")
        await router.on_registered(None, first.to_bytes())
        await router.on_registered(None, second.to_bytes())
        d = decisions(publisher, second.data.complaint_id)[0]
        assert (d.repeat_of, d.first_contact_owner, d.severity) == (first.data.complaint_id, "web-desk",
                                                                     Severity.urgent)
    run(scenario)


@pytest.mark.integration
def test_two_routers_claiming_one_customer_agree_on_one_anchor(redis_url: str, redis_prefix: str) -> None:
    from services.router.adapters import RedisFirstContacts
    from services.router.ports import PriorComplaint

    async def main() -> list[PriorComplaint | None]:
        client = aioredis.from_url(redis_url)
        try:
            store = RedisFirstContacts(client, prefix=f"{redis_prefix}{uuid.uuid4().hex[:6]}:")
            # Given two complaints of one customer routed at the same moment by two instances
            claims = [store.claim("cust-1", PriorComplaint(complaint_id=f"C{i}", owner=f"agent-{i}"),
                                  window_seconds=60) for i in range(2)]
            return list(await asyncio.gather(*claims))
        finally:
            await client.aclose()

    # Then exactly one became the anchor and the other sees it
    results = asyncio.run(main())
    assert results.count(None) == 1
    (seen,) = [r for r in results if r is not None]
    assert seen.complaint_id in {"C0", "C1"}


def assignment(cid: str, action: CaseAction, *, actor: str = "supervisor-01", **to: str) -> CaseEvent:
    return case_event(cid, action, actor=actor, assignment={"reason": "needs a billing specialist", **to})


def test_staff_assignments_and_transfers_rebook_the_case_and_keep_the_loads(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        router, publisher, cases = instance()
        # Given a quality case booked to quality-l1-01 on Monday morning
        await router.on_registered(None, registered(0).to_bytes())
        cid = "261123-0000000000"
        assert decisions(publisher, cid)[0].handler == "quality-l1-01"
        # When a supervisor transfers it to the billing department (no handler named), twice
        moved = assignment(cid, CaseAction.transferred, department="billing")
        await router.on_case_event(None, moved.to_bytes())
        await router.on_case_event(None, moved.to_bytes())
        # Then it is re-booked once, to billing's least-loaded on-duty L1 handler, and the
        # quality handler's load is released
        d = decisions(publisher, cid)
        assert [(x.decision, x.department, x.handler, x.revision) for x in d[1:]] == [
            (DecisionKind.transferred, "billing", "billing-l1-01", 2)]
        assert d[1].trigger == "transferred" and "needs a billing specialist" in d[1].reasons[0]
        assert await cases.loads() == {"billing-l1-01": 1}
        # When it is assigned by name to billing-l1-02, and a co-handler of quality is added
        await router.on_case_event(None, assignment(cid, CaseAction.assigned,
                                                    handler="billing-l1-02").to_bytes())
        await router.on_case_event(None, assignment(cid, CaseAction.co_handler_added,
                                                    handler="quality-l1-01").to_bytes())
        # Then billing-l1-02 holds it, the co-handler is recorded and holds no load
        last = decisions(publisher, cid)[-1]
        assert (last.decision, last.handler, last.department, last.revision) == (
            DecisionKind.co_handler_added, "billing-l1-02", "billing", 4)
        assert [(c.handler, c.department) for c in last.co_handlers] == [("quality-l1-01", "quality")]
        assert await cases.loads() == {"billing-l1-02": 1}
        # And a resolution releases the named handler like any other
        await router.on_case_event(None, case_event(cid, CaseAction.resolved, actor="billing-l1-02",
                                                    result="ok").to_bytes())
        assert await cases.loads() == {}
    run(scenario)


def test_a_named_handler_is_booked_beyond_capacity_and_an_unknown_department_is_refused(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        router, publisher, cases = instance()
        # Given two cases, the first booked to quality-l1-01, the second to quality-l1-02
        for n in range(2):
            await router.on_registered(None, registered(n).to_bytes())
        first, second = "261123-0000000000", "261123-0000000001"
        # When staff assign the second to quality-l1-01 by name
        await router.on_case_event(None, assignment(second, CaseAction.assigned,
                                                    handler="quality-l1-01").to_bytes())
        # Then quality-l1-01 holds both: staff chose them, the least-loaded rule does not apply
        assert await cases.loads() == {"quality-l1-01": 2}
        assert "named by staff (1 open before)" in " ".join(decisions(publisher, second)[-1].reasons)
        # When a transfer names a department the roster does not have
        with pytest.raises(Rejected, match="data.assignment.department: nowhere is not a department"):
            await router.on_case_event(None, assignment(first, CaseAction.transferred,
                                                        department="nowhere").to_bytes())
        # Then nothing changed
        assert len(decisions(publisher, first)) == 1 and await cases.loads() == {"quality-l1-01": 2}
    run(scenario)


def test_a_dissatisfied_answer_on_a_revisit_call_escalates_once_with_its_reopen(run: Run) -> None:
    async def scenario(instance: Instance) -> None:
        router, publisher, _ = instance()
        # Given a routed case
        await router.on_registered(None, registered(0).to_bytes())
        cid = "261123-0000000000"
        # When a revisit call records a score of 1, and the notifier's reopen (caused by it) follows
        call = case_event(cid, CaseAction.contacted, actor="quality-l1-01", contact={
            "kind": "phone_callback", "purpose": "revisit", "reached": True, "score": 1})
        await router.on_case_event(None, call.to_bytes())
        await router.on_case_event(None, case_event(cid, CaseAction.reopened, cause=call).to_bytes())
        # Then the case climbs one level, once
        d = decisions(publisher, cid)
        assert [(x.decision, x.level, x.trigger) for x in d[1:]] == [
            (DecisionKind.escalated, Level.L2, "dissatisfied")]
    run(scenario)
