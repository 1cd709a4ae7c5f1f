"""Deadline rules: which clocks a decision starts, what a stop or a due clock emits. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import AwareDatetime

from schemas.envelope import Model
from schemas.events import (
    CaseAction,
    Milestone,
    Nature,
    RoutingDecision,
    Severity,
    SlaAlert,
    SlaOutcome,
)
from services.common.policy import SlaPolicy


class MilestoneClock(Model):
    """One running deadline, with what an alert about it needs to say."""

    complaint_id: str
    milestone: Milestone
    severity: Severity
    started_at: AwareDatetime
    deadline: AwareDatetime
    notify: list[str]
    policy_version: str
    correlationid: str
    causationid: str


@dataclass(frozen=True)
class ClockState:
    """What the store knows of one (complaint, milestone): the clock, a stop, alerts sent."""

    clock: MilestoneClock | None = None
    stopped_at: datetime | None = None
    sent: frozenset[SlaOutcome] = field(default_factory=frozenset)


def start_clocks(
    decision: RoutingDecision, *, policy: SlaPolicy, version: str, scale: float,
    correlationid: str, causationid: str,
) -> list[MilestoneClock]:
    """The clocks a routing decision starts (none for praise or suggestions), limits / ``scale``."""
    if decision.nature is not Nature.complaint:
        return []
    return [
        MilestoneClock(
            complaint_id=decision.complaint_id, milestone=milestone, severity=decision.severity,
            started_at=decision.received_at,
            deadline=decision.received_at + rule.targets[decision.severity] / scale,
            notify=rule.notify[decision.severity], policy_version=version,
            correlationid=correlationid, causationid=causationid,
        )
        for milestone, rule in policy.milestones.items()
    ]


def milestones_stopped_by(action: CaseAction, *, policy: SlaPolicy) -> list[Milestone]:
    """The milestones a case action meets."""
    return [m for m, rule in policy.milestones.items() if action.value in rule.stop_on]


def _alert(clock: MilestoneClock, outcome: SlaOutcome, at: datetime, on_time: bool | None) -> SlaAlert:
    return SlaAlert(
        complaint_id=clock.complaint_id, milestone=clock.milestone, outcome=outcome,
        severity=clock.severity, started_at=clock.started_at, deadline=clock.deadline,
        observed_at=at, on_time=on_time, policy_version=clock.policy_version, notify=clock.notify,
    )


def alerts_after_start(state: ClockState) -> list[SlaAlert]:
    """Alerts owed after a start: started, and met if a stop came first."""
    clock = state.clock
    if clock is None or SlaOutcome.started in state.sent:
        return []
    return [_alert(clock, SlaOutcome.started, clock.started_at, None), *alerts_after_stop(state)]


def alerts_after_stop(state: ClockState) -> list[SlaAlert]:
    """Alerts owed after a stop: met (on time or late), once the clock is known."""
    clock = state.clock
    if clock is None or state.stopped_at is None or SlaOutcome.met in state.sent:
        return []
    return [_alert(clock, SlaOutcome.met, state.stopped_at, state.stopped_at <= clock.deadline)]


def alerts_when_due(state: ClockState, *, now: datetime) -> list[SlaAlert]:
    """The breach owed by a clock whose deadline has passed, unless met first."""
    clock = state.clock
    if (clock is None or state.stopped_at is not None or now < clock.deadline
            or SlaOutcome.breached in state.sent):
        return []
    return [_alert(clock, SlaOutcome.breached, now, False)]
