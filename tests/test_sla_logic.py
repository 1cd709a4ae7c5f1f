"""SLA rules with the time passed in: which clocks start, what a stop or a due clock owes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import CaseAction, Level, Milestone, Nature, RoutingDecision, Severity, SlaOutcome
from services.common.policy import load_policy
from services.sla_monitor import logic

POLICY = load_policy()
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def clocks(severity: Severity, scale: float = 1) -> dict[Milestone, logic.MilestoneClock]:
    decision = RoutingDecision(complaint_id="C", received_at=T0, severity=severity, department="q",
                               level=Level.L1, first_contact_owner="o", reasons=[])
    return {c.milestone: c for c in logic.start_clocks(
        decision, policy=POLICY.sla, version="v1", scale=scale, correlationid="c", causationid="r")}


@pytest.mark.parametrize(("severity", "scale", "ack", "resolve"), [
    (Severity.general, 1, timedelta(hours=1), timedelta(hours=72)),
    (Severity.urgent, 1, timedelta(minutes=30), timedelta(hours=48)),
    (Severity.major, 1, timedelta(minutes=10), timedelta(hours=24)),
    (Severity.general, 3600, timedelta(seconds=1), timedelta(seconds=72)),
])
def test_deadlines_follow_the_policy_and_the_scale(severity: Severity, scale: float,
                                                   ack: timedelta, resolve: timedelta) -> None:
    got = clocks(severity, scale)
    assert got[Milestone.acknowledge].deadline - T0 == ack
    assert got[Milestone.resolve].deadline - T0 == resolve
    assert got[Milestone.acknowledge].policy_version == "v1"


@pytest.mark.parametrize(("action", "milestones"), [
    (CaseAction.acknowledged, [Milestone.acknowledge]),
    (CaseAction.resolved, [Milestone.acknowledge, Milestone.resolve]),
    (CaseAction.note, []),
])
def test_which_actions_meet_which_milestones(action: CaseAction, milestones: list[Milestone]) -> None:
    assert logic.milestones_stopped_by(action, policy=POLICY.sla) == milestones


def _outcomes(alerts: list) -> list[tuple[SlaOutcome, bool | None]]:  # type: ignore[type-arg]
    return [(a.outcome, a.on_time) for a in alerts]


ACK = clocks(Severity.general)[Milestone.acknowledge]


@pytest.mark.parametrize(("state", "owed"), [
    (logic.ClockState(clock=ACK), [(SlaOutcome.started, None)]),
    (logic.ClockState(clock=ACK, sent=frozenset({SlaOutcome.started})), []),  # a redelivered start
    (logic.ClockState(clock=None, stopped_at=T0), []),
    # a stop that arrived before the start: started and met together
    (logic.ClockState(clock=ACK, stopped_at=T0), [(SlaOutcome.started, None), (SlaOutcome.met, True)]),
    (logic.ClockState(clock=ACK, stopped_at=T0 + timedelta(hours=2)),
     [(SlaOutcome.started, None), (SlaOutcome.met, False)]),
])
def test_alerts_after_a_start(state: logic.ClockState, owed: list) -> None:  # type: ignore[type-arg]
    assert _outcomes(logic.alerts_after_start(state)) == owed


@pytest.mark.parametrize(("state", "owed"), [
    (logic.ClockState(clock=ACK), []),
    (logic.ClockState(clock=ACK, stopped_at=T0), [(SlaOutcome.met, True)]),  # never a second "started"
    (logic.ClockState(clock=ACK, stopped_at=T0 + timedelta(hours=2)), [(SlaOutcome.met, False)]),
    (logic.ClockState(clock=ACK, stopped_at=T0, sent=frozenset({SlaOutcome.met})), []),
    (logic.ClockState(clock=None, stopped_at=T0), []),
])
def test_alerts_after_a_stop(state: logic.ClockState, owed: list) -> None:  # type: ignore[type-arg]
    assert _outcomes(logic.alerts_after_stop(state)) == owed


@pytest.mark.parametrize(("state", "now", "owed"), [
    (logic.ClockState(clock=ACK), T0 + timedelta(minutes=59), []),
    (logic.ClockState(clock=ACK), T0 + timedelta(hours=1), [(SlaOutcome.breached, False)]),
    (logic.ClockState(clock=ACK, sent=frozenset({SlaOutcome.breached})), T0 + timedelta(hours=2), []),
    (logic.ClockState(clock=ACK, stopped_at=T0), T0 + timedelta(hours=2), []),
])
def test_a_due_clock_owes_one_breach_unless_met(state: logic.ClockState, now: datetime,
                                                owed: list) -> None:  # type: ignore[type-arg]
    alerts = logic.alerts_when_due(state, now=now)
    assert _outcomes(alerts) == owed
    if alerts:
        assert alerts[0].notify == ["first_contact_owner"] and alerts[0].observed_at == now


@pytest.mark.parametrize("nature", [Nature.praise, Nature.suggestion])
def test_praise_and_suggestions_start_no_deadlines(nature: Nature) -> None:
    decision = RoutingDecision(complaint_id="C", nature=nature, received_at=T0, severity=Severity.general,
                               department="q", level=Level.L1, first_contact_owner="o", reasons=[])
    assert logic.start_clocks(decision, policy=POLICY.sla, version="v1", scale=1, correlationid="c",
                              causationid="r") == []
