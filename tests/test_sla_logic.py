"""SLA rules with the time passed in: terms, facts, the clock fold, the alerts owed, the rebuild."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import Envelope
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
    SlaEvent,
)
from services.common.policy import load_policy
from services.sla_monitor import logic
from services.sla_monitor.facts import Fact, Terms, facts_of, terms_for
from services.sla_monitor.logic import CALENDAR_TIME, Calendars

POLICY = load_policy()
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
CALENDARS: Calendars = {"calendar": CALENDAR_TIME, "business": CALENDAR_TIME}
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
    update = CaseUpdate(complaint_id="C", action=name, actor=str(fields.pop("actor", "agent-1")),
                        **fields)  # type: ignore[arg-type]
    return CaseEvent.new(update, id=f"{name.value}@{at.isoformat()}", source="intake", time=at, subject="C")


def notified(kind: NotificationKind, at: datetime, status: str = "sent") -> NotificationEvent:
    record = NotificationRecord(notification_id="n", complaint_id="C", kind=kind, transport="outbox:email",
                                recipient="c***@example.com", language="en", status=status)  # type: ignore[arg-type]
    return NotificationEvent.new(record, id=f"n-{kind.value}@{at.isoformat()}", source="notifier", time=at,
                                 subject="C")


def fixed_terms(event: ComplaintRouted | None = None, scale: float = 1) -> Terms:
    got = terms_for(event or routed(), policy=POLICY.sla, version="v7", scale=scale)
    assert got is not None
    return got


def evaluate(events: list, now: datetime, t: Terms | None = None  # type: ignore[type-arg]
             ) -> tuple[dict[str, logic.Owed], datetime | None]:
    t = t or fixed_terms()
    facts = [f for e in events for f in facts_of(e)]
    cycles = logic.fold(t, facts, CALENDARS)
    owed, nxt = logic.owed("C", t, cycles, logic.latest_route(facts), CALENDARS, now=now)
    return {o.key: o for o in owed}, nxt


def keys(owed: dict[str, logic.Owed], milestone: str) -> list[str]:
    return sorted(k.split(":", 1)[1] for k in owed if k.startswith(f"{milestone}:"))


# ---- terms ----------------------------------------------------------------------


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
def test_the_terms_fix_targets_by_severity_code_and_scale(severity: Severity, code: str, scale: float,
                                                         milestone: Milestone, target: timedelta) -> None:
    t = fixed_terms(routed(severity, code=code), scale=scale)
    assert t.milestones[milestone].target == target
    assert t.version == "v7" and t.milestones[milestone].thresholds == [0.5, 0.8]
    assert t.milestones[Milestone.resolve].clock == "business"


def test_praise_later_decisions_and_suggestions_fix_no_terms() -> None:
    assert terms_for(routed(nature=Nature.praise), policy=POLICY.sla, version="v", scale=1) is None
    assert terms_for(routed(nature=Nature.suggestion), policy=POLICY.sla, version="v", scale=1) is None
    escalated = routed(decision=DecisionKind.escalated, revision=2)
    assert terms_for(escalated, policy=POLICY.sla, version="v", scale=1) is None


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
    assert [f.signals for f in facts_of(event)] == signals  # type: ignore[arg-type]


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
    owed, _ = evaluate([routed(severity, level=level)], T0 + 100 * H,
                       fixed_terms(routed(severity, level=level)))
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
    t = fixed_terms()
    facts: list[Fact] = facts_of(routed())
    cycles = logic.fold(t, facts, CALENDARS)
    assert logic.open_deadline(t, cycles, CALENDARS) == T0 + H  # acknowledge and respond: 1 h


# ---- restoring from the topics ----------------------------------------------------

E = TypeVar("E", bound=Envelope)
Records = list[dict[str, object]]
TOPIC = {"complaint.routed": 0, "case.updated": 1, "notification.recorded": 2}
ALERT = evaluate([routed()], T0 + 2 * H)[0]["respond:1:breached"].alert


def about(cid: str, event: E) -> E:
    """The same event about complaint ``cid``, under an id of its own."""
    data = event.data.model_copy(update={"complaint_id": cid})
    return event.model_copy(update={"id": f"{event.id}/{cid}", "subject": cid, "data": data})


def sla_record(subject: str, event_id: str) -> dict[str, object]:
    """A complaints.sla record: an alert about ``subject`` published under ``event_id``."""
    alert = ALERT.model_copy(update={"complaint_id": subject})
    return SlaEvent.new(alert, id=event_id, source="sla-monitor", time=T0, subject=subject).model_dump(mode="json")


def topics(events: list[Envelope], alerts: Records | None = None) -> tuple[Records, Records, Records, Records]:
    """complaints.routed, .lifecycle, .notifications and .sla holding ``events`` and ``alerts``."""
    out: tuple[Records, Records, Records, Records] = ([], [], [], list(alerts or []))
    for e in events:
        out[TOPIC[e.type]].append(e.model_dump(mode="json"))
    return out


def restore(routed: Records, lifecycle: Records, notifications: Records,
            alerts: Records) -> dict[str, logic.Restored]:
    return logic.restore_from_topics(routed, lifecycle, notifications, alerts, policy=POLICY.sla,
                                     version="v7", scale=1)


TWO = [*EVENTS, *(about("D", e) for e in EVENTS[:4])]
SENT = [sla_record("C", "c1"), sla_record("D", "d1"), sla_record("C", "c2")]
Reorder = Callable[[Records], Records]


@pytest.mark.parametrize("reorder", [
    pytest.param(lambda rs: rs, id="as published"),
    pytest.param(lambda rs: rs[::-1], id="reversed"),
    pytest.param(lambda rs: rs[len(rs) // 2:] + rs[:len(rs) // 2], id="rotated"),
    pytest.param(lambda rs: rs + rs, id="every record delivered twice"),
    pytest.param(lambda rs: rs[1::2] + rs[::2], id="odd ones first"),
])
def test_the_order_of_the_topics_records_changes_nothing_restored(reorder: Reorder) -> None:
    # Given the records of two complaints and their sent alerts on the four topics
    published = topics(TWO, SENT)
    # When the topics are read in another order, or with records repeated
    got = restore(*(reorder(list(records)) for records in published))
    # Then the restore is the one of the topics as published
    assert got == restore(*published)
    # And it holds each complaint's facts once, its terms and its sent alerts
    c = got["C"]
    assert {f.id for f in c.facts} == {f.id for e in EVENTS for f in facts_of(e)}
    assert len(c.facts) == len({f.id for f in c.facts})
    assert c.terms == fixed_terms() and c.sent == ["c1", "c2"]
    assert got["D"].terms == fixed_terms(about("D", routed())) and got["D"].sent == ["d1"]


LATER = routed(decision=DecisionKind.escalated, revision=2, level=Level.L2, at=T0 + H)


@pytest.mark.parametrize(("decisions", "cause"), [
    pytest.param([routed()], "routed-1", id="one decision"),
    pytest.param([LATER, routed()], "routed-1", id="the escalation read first"),
    pytest.param([routed(at=T0 + M).model_copy(update={"id": "again"}), routed()], "routed-1",
                 id="the routing decision published twice: the earlier wins"),
    pytest.param([routed(nature=Nature.praise)], None, id="praise has no clocks"),
    pytest.param([LATER], None, id="first decision gone from the topic"),
])
def test_the_first_routing_decision_fixes_the_restored_terms(decisions: list[ComplaintRouted],
                                                             cause: str | None) -> None:
    # Given routing decisions of complaint C on complaints.routed
    # When the store is restored from the topics
    restored = restore(*topics(list(decisions)))["C"]
    # Then the terms are those its first routing decision fixed (none without one)
    assert (restored.terms.cause if restored.terms else None) == cause
    first = next((d for d in decisions if d.id == cause), None)
    assert restored.terms == (fixed_terms(first) if first else None)


@pytest.mark.parametrize(("alerts", "sent"), [
    pytest.param([], {"C": [], "D": []}, id="nothing sent"),
    pytest.param(SENT, {"C": ["c1", "c2"], "D": ["d1"]}, id="grouped by subject"),
    pytest.param([sla_record("C", "c1"), sla_record("C", "c1")], {"C": ["c1"], "D": []},
                 id="an alert published twice counts once"),
    pytest.param([sla_record("E", "e1")], {"C": [], "D": []},
                 id="a complaint without facts is not restored"),
])
def test_sent_alerts_are_restored_per_complaint(alerts: Records, sent: dict[str, list[str]]) -> None:
    # Given complaints C and D on the input topics, and alerts on complaints.sla
    # When the store is restored from the topics
    restored = restore(*topics(TWO, alerts))
    # Then each complaint's sent alert ids are those whose subject it is
    assert {cid: r.sent for cid, r in restored.items()} == sent
