"""SLA rules with the time passed in: plans, facts, the clock fold and the alerts owed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    ComplaintRouted,
    DecisionKind,
    Level,
    Milestone,
    Nature,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
    RoutingDecision,
    Severity,
)
from services.common.policy import load_policy
from services.sla_monitor import logic
from services.sla_monitor.logic import CALENDAR_TIME, Fact

POLICY = load_policy()
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
LINES: dict[logic.ClockKind, logic.TimeLine] = {"calendar": CALENDAR_TIME, "business": CALENDAR_TIME}
H = timedelta(hours=1)
M = timedelta(minutes=1)


def routed(severity: Severity = Severity.general, *, code: str = "PQ-01", nature: Nature = Nature.complaint,
           handler: str | None = "quality-l1-01", review: bool = False, level: Level = Level.L1,
           decision: DecisionKind = DecisionKind.routed, revision: int = 1,
           at: datetime = T0) -> ComplaintRouted:
    d = RoutingDecision(complaint_id="C", decision=decision, revision=revision, nature=nature,
                        received_at=T0, code=code, severity=severity, department="quality",
                        level=level, handler=handler, review=review, first_contact_owner="web-desk",
                        reasons=[])
    return ComplaintRouted.new(d, id=f"routed-{revision}", source="router", time=at, subject="C")


def action(name: CaseAction, at: datetime, **fields: object) -> CaseEvent:
    if name is CaseAction.resolved:
        fields.setdefault("result", "done")
    if name is CaseAction.satisfaction:
        fields.setdefault("score", 4)
    update = CaseUpdate(complaint_id="C", action=name, actor="agent-1", **fields)  # type: ignore[arg-type]
    return CaseEvent.new(update, id=f"{name.value}@{at.isoformat()}", source="intake", time=at, subject="C")


def notified(kind: NotificationKind, at: datetime, status: str = "sent") -> NotificationEvent:
    record = NotificationRecord(notification_id="n", complaint_id="C", kind=kind, transport="outbox:email",
                                recipient="c***@example.com", language="en", status=status)  # type: ignore[arg-type]
    return NotificationEvent.new(record, id=f"n-{kind.value}@{at.isoformat()}", source="notifier", time=at,
                                 subject="C")


def plan(event: ComplaintRouted | None = None, scale: float = 1) -> logic.Plan:
    got = logic.plan_for(event or routed(), policy=POLICY.sla, version="v7", scale=scale)
    assert got is not None
    return got


def evaluate(events: list, now: datetime, p: logic.Plan | None = None  # type: ignore[type-arg]
             ) -> tuple[dict[str, logic.Owed], datetime | None]:
    p = p or plan()
    facts = [f for e in events for f in logic.facts_of(e)]
    cycles = logic.fold(p, facts, LINES)
    owed, nxt = logic.owed("C", p, cycles, logic.latest_route(facts), LINES, now=now)
    return {o.key: o for o in owed}, nxt


def keys(owed: dict[str, logic.Owed], milestone: str) -> list[str]:
    return sorted(k.split(":", 1)[1] for k in owed if k.startswith(f"{milestone}:"))


# ---- plans ----------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "code", "scale", "milestone", "target"), [
    (Severity.general, "PQ-01", 1, Milestone.acknowledge, H),
    (Severity.general, "PQ-01", 1, Milestone.respond, H),
    (Severity.urgent, "PQ-01", 1, Milestone.respond, 30 * M),
    (Severity.major, "PQ-01", 1, Milestone.respond, 10 * M),
    (Severity.general, "PQ-01", 1, Milestone.dispatch, 2 * H),
    (Severity.general, "PQ-01", 1, Milestone.plan, 24 * H),
    (Severity.general, "PQ-01", 1, Milestone.resolve, 24 * H),   # 3 working days of 8 h
    (Severity.major, "PQ-01", 1, Milestone.resolve, 8 * H),
    (Severity.general, "SF-02", 1, Milestone.resolve, 8 * H),    # the code's own target
    (Severity.general, "PQ-01", 1, Milestone.feedback, 24 * H),
    (Severity.general, "PQ-01", 1, Milestone.revisit, 72 * H),
    (Severity.general, "PQ-01", 3600, Milestone.respond, timedelta(seconds=1)),
])
def test_a_plan_fixes_targets_by_severity_code_and_scale(severity: Severity, code: str, scale: float,
                                                         milestone: Milestone, target: timedelta) -> None:
    p = plan(routed(severity, code=code), scale=scale)
    assert p.milestones[milestone].target == target
    assert p.version == "v7" and p.milestones[milestone].thresholds == [0.5, 0.8]
    assert p.milestones[Milestone.resolve].clock == "business"


def test_praise_later_decisions_and_suggestions_fix_no_plan() -> None:
    assert logic.plan_for(routed(nature=Nature.praise), policy=POLICY.sla, version="v", scale=1) is None
    assert logic.plan_for(routed(nature=Nature.suggestion), policy=POLICY.sla, version="v", scale=1) is None
    escalated = routed(decision=DecisionKind.escalated, revision=2)
    assert logic.plan_for(escalated, policy=POLICY.sla, version="v", scale=1) is None


@pytest.mark.parametrize(("event", "signals"), [
    (routed(), [[], ["routed"], ["assigned"]]),
    (routed(review=True), [[], ["routed"]]),                 # in review: not dispatched yet
    (routed(handler=None), [[], ["routed"]]),                 # nobody on duty: not dispatched
    (routed(decision=DecisionKind.reclassified, revision=2), [[], ["assigned"]]),
    (action(CaseAction.acknowledged, T0), [["acknowledged"]]),
    (notified(NotificationKind.acknowledgement, T0), [["notified:acknowledgement"]]),
    (notified(NotificationKind.result, T0, status="failed"), []),
])
def test_the_signals_each_event_raises(event: object, signals: list[list[str]]) -> None:
    assert [f.signals for f in logic.facts_of(event)] == signals  # type: ignore[arg-type]


# ---- the clocks -------------------------------------------------------------------


def test_warnings_then_a_breach_as_time_passes() -> None:
    events = [routed()]
    owed, nxt = evaluate(events, T0 + M)
    assert keys(owed, "respond") == ["1:started"] and nxt == T0 + 30 * M  # the 50% warning
    owed, nxt = evaluate(events, T0 + 50 * M)
    assert keys(owed, "respond") == ["1:started", "1:warning:0.5", "1:warning:0.8"]
    assert owed["respond:1:warning:0.8"].due == T0 + 48 * M and nxt == T0 + H
    owed, _ = evaluate(events, T0 + 61 * M)
    breach = owed["respond:1:breached"].alert
    assert (breach.due_at, breach.on_time, breach.observed_at) == (T0 + H, False, T0 + 61 * M)
    assert breach.notify == ["first_contact_owner", "handler"]
    assert (breach.owner, breach.handler, breach.department, breach.level) == (
        "web-desk", "quality-l1-01", "quality", Level.L1)


def test_a_milestone_met_on_time_never_warns_or_breaches_later() -> None:
    owed, nxt = evaluate([routed(), action(CaseAction.acknowledged, T0 + 20 * M)], T0 + 100 * H)
    assert keys(owed, "respond") == ["1:met", "1:started"]
    assert owed["respond:1:met"].alert.on_time is True


def test_a_late_stop_is_a_breach_and_a_late_met() -> None:
    owed, _ = evaluate([routed(), action(CaseAction.acknowledged, T0 + 70 * M)], T0 + 71 * M)
    assert keys(owed, "respond") == ["1:breached", "1:met", "1:started", "1:warning:0.5", "1:warning:0.8"]
    assert owed["respond:1:met"].alert.on_time is False


def test_the_receipt_notification_meets_acknowledge_and_assignment_meets_dispatch() -> None:
    owed, _ = evaluate([routed(), notified(NotificationKind.acknowledgement, T0 + 2 * M)], T0 + 3 * H)
    assert owed["acknowledge:1:met"].alert.on_time is True
    assert owed["dispatch:1:met"].alert.on_time is True  # routed with a handler at once


def test_dispatch_waits_for_the_reviewer() -> None:
    events = [routed(review=True, handler="complaint-review-l1-01")]
    owed, _ = evaluate(events, T0 + 3 * H)
    assert "dispatch:1:breached" in owed
    owed, _ = evaluate([*events, routed(decision=DecisionKind.reclassified, revision=2, at=T0 + H)],
                       T0 + 3 * H)
    assert owed["dispatch:1:met"].alert.on_time and "dispatch:1:breached" not in owed


def test_waiting_on_the_customer_pauses_resolve_and_moves_its_deadline() -> None:
    events = [routed(), action(CaseAction.awaiting_customer, T0 + 10 * H)]
    owed, nxt = evaluate(events, T0 + 30 * H)
    paused = [k for k in owed if k.startswith("resolve:1:paused")]
    assert len(paused) == 1 and owed[paused[0]].alert.deadline is None
    assert "resolve:1:breached" not in owed  # no deadline runs while paused
    events.append(action(CaseAction.customer_replied, T0 + 20 * H))
    owed, nxt = evaluate(events, T0 + 21 * H)
    resumed = next(o for k, o in owed.items() if k.startswith("resolve:1:resumed"))
    assert resumed.alert.deadline == T0 + 34 * H  # 14 h left at the pause, counted from +20 h
    assert nxt == T0 + 22 * H  # 50% of 24 h = 12 h counted: 10 h before, 2 h after the pause
    owed, _ = evaluate(events, T0 + 35 * H)
    assert owed["resolve:1:breached"].due == T0 + 34 * H


def test_a_reopen_starts_a_new_resolve_cycle_and_a_new_feedback_cycle_after_it() -> None:
    events = [routed(), action(CaseAction.resolved, T0 + 5 * H),
              notified(NotificationKind.result, T0 + 6 * H),
              action(CaseAction.reopened, T0 + 30 * H)]
    owed, _ = evaluate(events, T0 + 31 * H)
    assert owed["resolve:1:met"].alert.on_time and owed["feedback:1:met"].alert.on_time
    second = owed["resolve:2:started"].alert
    assert (second.cycle, second.started_at, second.deadline) == (2, T0 + 30 * H, T0 + 54 * H)
    events.append(action(CaseAction.resolved, T0 + 40 * H))
    owed, _ = evaluate(events, T0 + 70 * H)
    assert owed["resolve:2:met"].alert.on_time
    assert "feedback:2:breached" in owed  # the second result was never sent within 24 h
    assert "revisit:2:started" in owed


def test_closing_a_case_cancels_its_open_clocks() -> None:
    owed, _ = evaluate([routed(), action(CaseAction.closed, T0 + 5 * M)], T0 + 100 * H)
    assert keys(owed, "respond") == ["1:cancelled", "1:started"]
    assert "resolve:1:breached" not in owed


@pytest.mark.parametrize(("severity", "level", "executives"), [
    (Severity.general, Level.L1, False),
    (Severity.general, Level.L3, True),   # executive supervision
    (Severity.major, Level.L3, True),
])
def test_a_breach_names_executives_for_major_cases_and_l3(severity: Severity, level: Level,
                                                         executives: bool) -> None:
    owed, _ = evaluate([routed(severity, level=level)], T0 + 100 * H, plan(routed(severity, level=level)))
    assert ("executives" in owed["plan:1:breached"].alert.notify) is executives


def test_alert_keys_and_ids_are_stable() -> None:
    a, _ = evaluate([routed()], T0 + 2 * H)
    b, _ = evaluate([routed()], T0 + 3 * H)
    assert a["respond:1:breached"].event_id() == b["respond:1:breached"].event_id()


EVENTS = [routed(), routed(decision=DecisionKind.escalated, revision=2, level=Level.L2, at=T0 + 70 * M),
          notified(NotificationKind.acknowledgement, T0 + M), action(CaseAction.acknowledged, T0 + 2 * H),
          action(CaseAction.awaiting_customer, T0 + 3 * H), action(CaseAction.customer_replied, T0 + 5 * H),
          action(CaseAction.resolved, T0 + 9 * H), notified(NotificationKind.result, T0 + 10 * H),
          action(CaseAction.reopened, T0 + 20 * H), action(CaseAction.satisfaction, T0 + 21 * H)]


@settings(max_examples=60, deadline=None)
@given(st.permutations(EVENTS), st.integers(min_value=0, max_value=120))
def test_the_order_facts_arrive_in_does_not_matter(events: list[object], hours: int) -> None:
    now = T0 + timedelta(hours=hours)
    expected, expected_next = evaluate(EVENTS, now)
    got, got_next = evaluate(list(events), now)
    assert {k: (o.due, o.alert) for k, o in got.items()} == {k: (o.due, o.alert) for k, o in expected.items()}
    assert got_next == expected_next


def test_an_escalation_changes_who_is_named_not_the_clocks() -> None:
    owed, _ = evaluate(EVENTS[:2], T0 + 100 * H)
    assert owed["plan:1:breached"].alert.level is Level.L2


def test_the_open_deadline_is_the_earliest_running_one() -> None:
    p = plan()
    facts: list[Fact] = logic.facts_of(routed())
    cycles = logic.fold(p, facts, LINES)
    assert logic.open_deadline(p, cycles, LINES) == T0 + H  # acknowledge and respond: 1 h
