"""Deadline rules, pure: from a complaint's facts and terms to its milestones' clocks, the
alerts they owe, and the facts and terms restored from the topics after Redis lost them.

A complaint's clocks are a fold over its facts (``facts``), each kept once under its
event id and applied in the order of the time it happened, not the order it arrived.
The same facts always give the same clocks, so redelivery, duplicates and out-of-order
topics change nothing, and the state can be rebuilt from the topics
(``restore_from_topics``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property, partial
from typing import Literal, Protocol

from schemas.envelope import derived_id
from schemas.events import (
    CaseEvent,
    ComplaintRouted,
    Level,
    Milestone,
    NotificationEvent,
    Severity,
    SlaAlert,
    SlaOutcome,
)
from services.common.policy import SlaPolicy
from services.sla_monitor.facts import ClockKind, Fact, MilestoneTerms, Route, Terms, facts_of, terms_for


class Calendar(Protocol):
    """How a clock counts time: every instant (calendar time) or working hours only (business)."""

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which the time counted from ``start`` reaches ``duration``."""
        ...

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """The time counted in [start, end); zero if ``end`` is not after ``start``."""
        ...


class CalendarTime:
    """Every instant counts."""

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """``start`` plus ``duration``."""
        return start + duration

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """The time from ``start`` to ``end``; zero if ``end`` is not after it."""
        return max(end - start, timedelta(0))


CALENDAR_TIME = CalendarTime()
Calendars = Mapping[ClockKind, Calendar]


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
        """Counting now: neither ended nor paused."""
        return self.end is None and self.segments[-1][1] is None

    @property
    def paused(self) -> bool:
        """Not ended, but its last span is closed (waiting for a resume signal)."""
        return self.end is None and self.segments[-1][1] is not None

    def reached(self, need: timedelta, calendar: Calendar, *, project: bool = False) -> datetime | None:
        """When the counted time reaches ``need``; None if it does not (yet).

        ``project`` treats the last span as still open (the deadline a met clock had).
        """
        done = timedelta(0)
        for i, (a, b) in enumerate(self.segments):
            assert a is not None
            last = i == len(self.segments) - 1
            if b is None or (project and last and self.end is not None):
                return calendar.add(a, need - done)
            span = calendar.elapsed(a, b)
            if done + span >= need:
                return calendar.add(a, need - done)
            done += span
        return None


def fold(terms: Terms, facts: Iterable[Fact], calendars: Calendars) -> dict[Milestone, list[Cycle]]:
    """Each milestone's cycles from the complaint's facts, applied in time order.

    At one instant a fact that starts the milestone goes first (a decision routed with a
    handler starts dispatch and meets it at once); ties after that go by fact id.
    """
    facts = list(facts)
    out: dict[Milestone, list[Cycle]] = {}
    for milestone, mt in terms.milestones.items():
        cycles: list[Cycle] = []
        starts = set(mt.start_on)
        ordered = sorted(facts, key=lambda f: (f.at, not starts.intersection(f.signals), f.id))
        for fact in ordered:
            for signal in fact.signals:
                current = cycles[-1] if cycles else None
                live = current is not None and current.end is None
                if not live and signal in mt.start_on:
                    cycles.append(Cycle(n=len(cycles) + 1, started_at=fact.at, start_fact=fact.id,
                                        segments=[[fact.at, None]]))
                elif live and current is not None:
                    _apply(current, signal, fact, mt)
        out[milestone] = cycles
    return out


def _apply(cycle: Cycle, signal: str, fact: Fact, mt: MilestoneTerms) -> None:
    if signal in mt.stop_on:
        if cycle.running:
            cycle.segments[-1][1] = fact.at
        cycle.end, cycle.ended_at = "met", fact.at
    elif signal in mt.cancel_on:
        if cycle.running:
            cycle.segments[-1][1] = fact.at
        cycle.end, cycle.ended_at = "cancelled", fact.at
    elif signal in mt.pause_on and cycle.running:
        cycle.segments[-1][1] = fact.at
        cycle.pauses.append((fact.id, fact.at))
    elif signal in mt.resume_on and cycle.paused:
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
        """The alert, built once."""
        return self.build()

    def event_id(self) -> str:
        """The alert's deterministic event id: the same for every instance and every run."""
        return derived_id("sla", self.complaint_id, self.key)


def latest_route(facts: Iterable[Fact]) -> Route | None:
    """The route of the complaint's latest routing decision (highest revision), if any."""
    routes = [f.route for f in facts if f.route is not None]
    return max(routes, key=lambda r: r.revision) if routes else None


def owed(complaint_id: str, terms: Terms, cycles: dict[Milestone, list[Cycle]], route: Route | None,
         calendars: Calendars, *, now: datetime) -> tuple[list[Owed], datetime | None]:
    """Every alert due by ``now`` (sent or not: the caller skips sent keys), and the next due time."""
    due: list[Owed] = []
    upcoming: list[datetime] = []
    for milestone, mt in terms.milestones.items():
        calendar = calendars[mt.clock]
        for c in cycles.get(milestone, []):
            base = f"{milestone.value}:{c.n}"
            deadline = c.reached(mt.target, calendar, project=c.end is not None)

            common: dict[str, object] = {
                "complaint_id": complaint_id, "milestone": milestone, "cycle": c.n,
                "severity": terms.severity, "code": terms.code, "clock": mt.clock,
                "started_at": c.started_at, "deadline": deadline, "policy_version": terms.version,
                "notify": mt.notify, "owner": route.owner if route else None,
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
                (f"{base}:warning:{th:g}", th, mt.target * th) for th in mt.thresholds]
            timed.append((f"{base}:breached", None, mt.target))
            for key, th, need in timed:
                when = c.reached(need, calendar)
                if when is None or (c.ended_at is not None and c.ended_at <= when):
                    continue  # not reached while counting, or met / cancelled first
                if when > now:
                    upcoming.append(when)
                    continue
                if th is None:
                    due.append(Owed(complaint_id, key, when, partial(
                        alert, SlaOutcome.breached, now, due_at=when, on_time=False,
                        notify=_breach_roles(mt.notify, terms, route))))
                else:
                    due.append(Owed(complaint_id, key, when, partial(
                        alert, SlaOutcome.warning, now, due_at=when, threshold=th,
                        notify=_warning_roles(route))))
            if c.end == "met" and c.ended_at is not None:
                counted = c.reached(mt.target, calendar)  # reached while counting (pauses excluded)?
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


def _breach_roles(roles: list[str], terms: Terms, route: Route | None) -> list[str]:
    """The milestone's roles; executives too for a major case or one at L3 (高管督办)."""
    out = list(roles)
    if (terms.severity is Severity.major or (route and route.level is Level.L3)) and "executives" not in out:
        out.append("executives")
    return out


def open_deadline(terms: Terms, cycles: dict[Milestone, list[Cycle]],
                  calendars: Calendars) -> datetime | None:
    """The earliest deadline among running clocks (the most urgent open item)."""
    found = [c.reached(mt.target, calendars[mt.clock]) for m, mt in terms.milestones.items()
             for c in cycles.get(m, []) if c.running]
    return min((d for d in found if d is not None), default=None)


# ---- restoring from the topics ----------------------------------------------------


@dataclass(frozen=True)
class Restored:
    """What the topics hold of one complaint: its facts, its terms, the alerts already sent."""

    facts: list[Fact]
    terms: Terms | None
    sent: list[str]


def restore_from_topics(routed: Sequence[Mapping[str, object]], lifecycle: Sequence[Mapping[str, object]],
                        notifications: Sequence[Mapping[str, object]], alerts: Sequence[Mapping[str, object]],
                        *, policy: SlaPolicy, version: str, scale: float) -> dict[str, Restored]:
    """Every complaint's facts, terms and sent alert ids, from the events of the four topics.

    Complaints are those with facts. Facts are kept once per id; the terms are those of the
    complaint's first routing decision (lowest revision, then earliest, then lowest id);
    sent alerts are grouped by subject. The order of the events changes nothing.
    """
    facts: dict[str, dict[str, Fact]] = {}
    first: dict[str, ComplaintRouted] = {}
    for raw in routed:
        event = ComplaintRouted.model_validate(raw)
        cid = event.data.complaint_id
        _keep(facts.setdefault(cid, {}), facts_of(event))
        if terms_for(event, policy=policy, version=version, scale=scale) is not None:
            seen = first.get(cid)
            if seen is None or _order(event) < _order(seen):
                first[cid] = event
    for raw in lifecycle:
        case = CaseEvent.model_validate(raw)
        _keep(facts.setdefault(case.data.complaint_id, {}), facts_of(case))
    for raw in notifications:
        note = NotificationEvent.model_validate(raw)
        _keep(facts.setdefault(note.data.complaint_id, {}), facts_of(note))
    sent: dict[str, set[str]] = {}
    for raw in alerts:
        sent.setdefault(str(raw.get("subject")), set()).add(str(raw["id"]))
    return {cid: Restored(
        facts=sorted(kept.values(), key=lambda f: (f.at, f.id)),
        terms=terms_for(first[cid], policy=policy, version=version, scale=scale) if cid in first else None,
        sent=sorted(sent.get(cid, ())))
        for cid, kept in facts.items()}


def _keep(kept: dict[str, Fact], facts: Iterable[Fact]) -> None:
    for fact in facts:
        kept.setdefault(fact.id, fact)


def _order(event: ComplaintRouted) -> tuple[int, datetime, str]:
    return event.data.revision, event.time, event.id
