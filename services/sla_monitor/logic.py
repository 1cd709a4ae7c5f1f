"""Deadline rules, pure: from a complaint's facts to its milestones' clocks and the alerts owed.

A complaint's clocks are a fold over its *facts*: the routing decisions, case actions and
notifications that concern it, each kept once under its event id and applied in the
order of the time it happened, not the order it arrived. The same facts always give
the same clocks, so redelivery, duplicates and out-of-order topics change nothing, and
the state can be rebuilt from the topics.

The policy in force when a complaint is first routed is frozen into its ``Plan`` (targets
for its severity and code, clock kind, thresholds, signals, roles); later policy
versions apply to new complaints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property, partial
from typing import Literal, Protocol

from pydantic import AwareDatetime, Field

from schemas.envelope import Envelope, Model, derived_id
from schemas.events import (
    CaseEvent,
    ComplaintRouted,
    DecisionKind,
    Level,
    Milestone,
    Nature,
    NotificationEvent,
    Severity,
    SlaAlert,
    SlaOutcome,
)
from services.common.policy import SlaPolicy

ClockKind = Literal["calendar", "business"]


class TimeLine(Protocol):
    """How a clock counts time: every instant (calendar) or working hours only (business)."""

    def add(self, start: datetime, duration: timedelta) -> datetime: ...

    def elapsed(self, start: datetime, end: datetime) -> timedelta: ...


class CalendarTime:
    """Every instant counts."""

    def add(self, start: datetime, duration: timedelta) -> datetime:
        return start + duration

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        return max(end - start, timedelta(0))


CALENDAR_TIME = CalendarTime()


# ---- facts and plan ---------------------------------------------------------------


class Route(Model):
    """Who and what a routing decision names, for the alerts' addressees."""

    revision: int
    severity: Severity
    code: str | None
    owner: str
    handler: str | None
    department: str
    level: Level


class Fact(Model):
    """One input event as the clocks see it: the signals it raises at one instant."""

    id: str = Field(description="Event id (plus a suffix when one event raises two facts).")
    at: AwareDatetime
    signals: list[str]
    route: Route | None = None


class MilestonePlan(Model):
    target: timedelta
    clock: ClockKind
    thresholds: list[float]
    notify: list[str]
    start_on: list[str]
    stop_on: list[str]
    pause_on: list[str]
    resume_on: list[str]
    cancel_on: list[str]


class Plan(Model):
    """The complaint's milestones under the policy version it was routed with."""

    version: str
    severity: Severity
    code: str | None
    correlationid: str
    cause: str = Field(description="Id of the routing decision that fixed the plan.")
    milestones: dict[Milestone, MilestonePlan]


def facts_of(event: Envelope) -> list[Fact]:
    """The facts an input event contributes (none for events the clocks ignore)."""
    if isinstance(event, ComplaintRouted):
        d = event.data
        route = Route(revision=d.revision, severity=d.severity, code=d.code,
                      owner=d.first_contact_owner, handler=d.handler, department=d.department,
                      level=d.level)
        facts = [Fact(id=f"{event.id}:route", at=event.time, signals=[], route=route)]
        if d.decision is DecisionKind.routed:
            facts.append(Fact(id=f"{event.id}:routed", at=d.received_at, signals=["routed"]))
        if d.handler is not None and not d.review:
            facts.append(Fact(id=f"{event.id}:assigned", at=event.time, signals=["assigned"]))
        return facts
    if isinstance(event, CaseEvent):
        return [Fact(id=event.id, at=event.time, signals=[event.data.action.value])]
    if isinstance(event, NotificationEvent) and event.data.status == "sent":
        return [Fact(id=event.id, at=event.time, signals=[f"notified:{event.data.kind.value}"])]
    return []


def plan_for(event: ComplaintRouted, *, policy: SlaPolicy, version: str, scale: float) -> Plan | None:
    """The plan a first routing decision fixes; None for praise and suggestions (no clocks)."""
    d = event.data
    if d.decision is not DecisionKind.routed or d.nature is not Nature.complaint:
        return None
    return Plan(version=version, severity=d.severity, code=d.code, correlationid=event.correlationid,
                cause=event.id, milestones={
        m: MilestonePlan(
            target=rule.target(d.severity, d.code) / scale, clock=rule.clock,
            thresholds=policy.thresholds(m), notify=list(rule.notify[d.severity]),
            start_on=rule.start_on, stop_on=rule.stop_on, pause_on=rule.pause_on,
            resume_on=rule.resume_on, cancel_on=rule.cancel_on)
        for m, rule in policy.milestones.items()})


# ---- the fold ---------------------------------------------------------------------


@dataclass
class Cycle:
    """One run of a milestone's clock, from a start signal to a stop or a cancel."""

    n: int
    started_at: datetime
    start_fact: str
    segments: list[list[datetime | None]] = field(default_factory=list)  # counting spans
    pauses: list[tuple[str, datetime]] = field(default_factory=list)
    resumes: list[tuple[str, datetime]] = field(default_factory=list)
    end: Literal["met", "cancelled"] | None = None
    ended_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.end is None and self.segments[-1][1] is None

    @property
    def paused(self) -> bool:
        return self.end is None and self.segments[-1][1] is not None

    def reached(self, need: timedelta, line: TimeLine, *, project: bool = False) -> datetime | None:
        """When the counted time reaches ``need``; None if it does not (yet).

        ``project`` treats the last span as still open (the deadline a met clock had).
        """
        done = timedelta(0)
        for i, (a, b) in enumerate(self.segments):
            assert a is not None
            last = i == len(self.segments) - 1
            if b is None or (project and last and self.end is not None):
                return line.add(a, need - done)
            span = line.elapsed(a, b)
            if done + span >= need:
                return line.add(a, need - done)
            done += span
        return None


def fold(plan: Plan, facts: Iterable[Fact], lines: dict[ClockKind, TimeLine]) -> dict[Milestone, list[Cycle]]:
    """Each milestone's cycles from the complaint's facts, applied in time order.

    At one instant a fact that starts the milestone goes first (a decision routed with a
    handler starts dispatch and meets it at once); ties after that go by fact id.
    """
    facts = list(facts)
    out: dict[Milestone, list[Cycle]] = {}
    for milestone, mp in plan.milestones.items():
        cycles: list[Cycle] = []
        starts = set(mp.start_on)
        ordered = sorted(facts, key=lambda f: (f.at, not starts.intersection(f.signals), f.id))
        for fact in ordered:
            for signal in fact.signals:
                current = cycles[-1] if cycles else None
                live = current is not None and current.end is None
                if not live and signal in mp.start_on:
                    cycles.append(Cycle(n=len(cycles) + 1, started_at=fact.at, start_fact=fact.id,
                                        segments=[[fact.at, None]]))
                elif live and current is not None:
                    _apply(current, signal, fact, mp)
        out[milestone] = cycles
    return out


def _apply(cycle: Cycle, signal: str, fact: Fact, mp: MilestonePlan) -> None:
    if signal in mp.stop_on:
        if cycle.running:
            cycle.segments[-1][1] = fact.at
        cycle.end, cycle.ended_at = "met", fact.at
    elif signal in mp.cancel_on:
        if cycle.running:
            cycle.segments[-1][1] = fact.at
        cycle.end, cycle.ended_at = "cancelled", fact.at
    elif signal in mp.pause_on and cycle.running:
        cycle.segments[-1][1] = fact.at
        cycle.pauses.append((fact.id, fact.at))
    elif signal in mp.resume_on and cycle.paused:
        cycle.segments.append([fact.at, None])
        cycle.resumes.append((fact.id, fact.at))


# ---- alerts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Owed:
    """An alert the clocks owe, by its key (unique per complaint), and the instant it is due.

    The alert itself is built on first use: most owed alerts were sent already, and the
    caller skips them by id.
    """

    complaint_id: str
    key: str
    due: datetime
    build: Callable[[], SlaAlert] = field(repr=False, compare=False)

    @cached_property
    def alert(self) -> SlaAlert:
        return self.build()

    def event_id(self) -> str:
        return derived_id("sla", self.complaint_id, self.key)


def latest_route(facts: Iterable[Fact]) -> Route | None:
    routes = [f.route for f in facts if f.route is not None]
    return max(routes, key=lambda r: r.revision) if routes else None


def owed(complaint_id: str, plan: Plan, cycles: dict[Milestone, list[Cycle]], route: Route | None,
         lines: dict[ClockKind, TimeLine], *, now: datetime) -> tuple[list[Owed], datetime | None]:
    """Every alert due by ``now`` (sent or not: the caller skips sent keys), and the next due time."""
    due: list[Owed] = []
    upcoming: list[datetime] = []
    for milestone, mp in plan.milestones.items():
        line = lines[mp.clock]
        for c in cycles.get(milestone, []):
            base = f"{milestone.value}:{c.n}"
            deadline = c.reached(mp.target, line, project=c.end is not None)

            common: dict[str, object] = {
                "complaint_id": complaint_id, "milestone": milestone, "cycle": c.n,
                "severity": plan.severity, "code": plan.code, "clock": mp.clock,
                "started_at": c.started_at, "deadline": deadline, "policy_version": plan.version,
                "notify": mp.notify, "owner": route.owner if route else None,
                "handler": route.handler if route else None,
                "department": route.department if route else None,
                "level": route.level if route else None, "on_time": None}
            alert = partial(_alert, common)

            due.append(Owed(complaint_id, f"{base}:started", c.started_at,
                            partial(alert, SlaOutcome.started, c.started_at)))
            for fid, at in c.pauses:
                due.append(Owed(complaint_id, f"{base}:paused:{fid}", at,
                                partial(alert, SlaOutcome.paused, at, deadline=None)))
            for fid, at in c.resumes:
                due.append(Owed(complaint_id, f"{base}:resumed:{fid}", at,
                                partial(alert, SlaOutcome.resumed, at)))
            timed: list[tuple[str, float | None, timedelta]] = [
                (f"{base}:warning:{th:g}", th, mp.target * th) for th in mp.thresholds]
            timed.append((f"{base}:breached", None, mp.target))
            for key, th, need in timed:
                when = c.reached(need, line)
                if when is None or (c.ended_at is not None and c.ended_at <= when):
                    continue  # not reached while counting, or met / cancelled first
                if when > now:
                    upcoming.append(when)
                    continue
                if th is None:
                    due.append(Owed(complaint_id, key, when, partial(
                        alert, SlaOutcome.breached, now, due_at=when, on_time=False,
                        notify=_breach_roles(mp.notify, plan, route))))
                else:
                    due.append(Owed(complaint_id, key, when, partial(
                        alert, SlaOutcome.warning, now, due_at=when, threshold=th,
                        notify=_warning_roles(route))))
            if c.end == "met" and c.ended_at is not None:
                counted = c.reached(mp.target, line)  # reached while counting (pauses excluded)?
                on_time = counted is None or c.ended_at <= counted
                due.append(Owed(complaint_id, f"{base}:met", c.ended_at,
                                partial(alert, SlaOutcome.met, c.ended_at, on_time=on_time)))
            elif c.end == "cancelled" and c.ended_at is not None:
                due.append(Owed(complaint_id, f"{base}:cancelled", c.ended_at,
                                partial(alert, SlaOutcome.cancelled, c.ended_at)))
    return due, min(upcoming, default=None)


def _alert(common: dict[str, object], outcome: SlaOutcome, observed: datetime, **fields: object) -> SlaAlert:
    """An alert of one cycle: its common facts, the outcome, and that outcome's own fields."""
    return SlaAlert.model_validate({**common, "outcome": outcome, "observed_at": observed, **fields})


def _warning_roles(route: Route | None) -> list[str]:
    return ["handler", "first_contact_owner"] if route and route.handler else ["first_contact_owner"]


def _breach_roles(roles: list[str], plan: Plan, route: Route | None) -> list[str]:
    """The milestone's roles; executives too for a major case or one at L3 (高管督办)."""
    out = list(roles)
    if (plan.severity is Severity.major or (route and route.level is Level.L3)) and "executives" not in out:
        out.append("executives")
    return out


def open_deadline(plan: Plan, cycles: dict[Milestone, list[Cycle]],
                  lines: dict[ClockKind, TimeLine]) -> datetime | None:
    """The earliest deadline among running clocks (the most urgent open item)."""
    found = [c.reached(mp.target, lines[mp.clock]) for m, mp in plan.milestones.items()
             for c in cycles.get(m, []) if c.running]
    return min((d for d in found if d is not None), default=None)
