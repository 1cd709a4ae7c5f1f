"""A complaint's clocks recomputed from its audit trail under a policy, and their totals. Pure.

``rebuild`` restores the envelopes the SLA monitor folds (routing decisions, case actions,
sent notifications) from a complaint's archived events and takes their facts with the
monitor's ``facts_of``; ``recompute`` runs the monitor's own rules on them (``terms_for``,
``fold``, ``owed``) under a policy, as of an instant. ``Totals`` counts the states of the
clocks recorded, recomputed under OLD and under NEW, complaint by complaint (what-if).

A cycle's state: ``on_time`` (met by its deadline), ``late`` (met after it), ``breached``
(deadline passed, not met), ``cancelled`` (the case closed first), ``open`` (running or
paused). A deadline is *due* when it came to an end: on time, late or breached; *breached*
counts every due deadline that was missed (the late ones too); the rate is on time / due.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.events import CaseEvent, ComplaintRouted, NotificationEvent
from services.archive.records import ArchivedEvent
from services.common.policy import MilestonePolicy, Policy
from services.sla_monitor.facts import Fact, facts_of, terms_for
from services.sla_monitor.logic import Calendars, Owed, fold, latest_route, owed

ClockKey = tuple[str, int]  # (milestone, cycle)
STATES = ("on_time", "late", "breached", "cancelled", "open")
ALL = "all"  # the severity of a row over every severity
PERSON = "person"  # the milestone of the row that totals the milestones a person must meet
EXAMPLES = 20  # mismatches described in full
_AUTOMATIC = frozenset({"routed", "assigned"})  # the router's signals; notified:* are the notifier's
_ENDS = ("met", "breached", "cancelled")  # in the archive's precedence


def person_milestone(rule: MilestonePolicy) -> bool:
    """Whether a person must meet the milestone: none of its stop signals is automatic."""
    return not any(s in _AUTOMATIC or s.startswith("notified:") for s in rule.stop_on)


# ---- one complaint --------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """One cycle of one milestone's clock: how it ended, or stands."""

    milestone: str
    cycle: int
    severity: str
    outcome: str  # met | breached | cancelled | open
    on_time: bool | None = None
    deadline: datetime | None = None

    @property
    def state(self) -> str:
        """on_time | late | breached | cancelled | open."""
        if self.outcome == "met":
            return "on_time" if self.on_time else "late"
        return self.outcome


@dataclass(frozen=True)
class Rebuilt:
    """The monitor's view of one complaint, restored from its audit trail."""

    complaint_id: str
    facts: list[Fact]
    routed: list[ComplaintRouted]  # first decisions first: the terms come from the earliest
    unreadable: int = 0  # events whose envelope could not be restored


def rebuild(complaint_id: str, trail: Iterable[ArchivedEvent]) -> Rebuilt:
    """Restore the routing, case and notification envelopes of a trail and take their facts."""
    facts: dict[str, Fact] = {}
    routed: list[ComplaintRouted] = []
    unreadable = 0
    for e in trail:
        try:
            envelope = _envelope(e)
        except ValidationError:
            unreadable += 1
            continue
        if envelope is None:
            continue
        if isinstance(envelope, ComplaintRouted):
            routed.append(envelope)
        for fact in facts_of(envelope):
            facts.setdefault(fact.id, fact)
    routed.sort(key=lambda r: (r.data.revision, r.time, r.id))
    return Rebuilt(complaint_id, sorted(facts.values(), key=lambda f: (f.at, f.id)), routed, unreadable)


def _envelope(e: ArchivedEvent) -> ComplaintRouted | CaseEvent | NotificationEvent | None:
    """The envelope an archived event came in, as far as the clocks read it (None: not theirs).

    Routing and notification summaries are their data models dumped as JSON; a case event
    keeps its actor and action in columns and its result, score and code in the summary
    (customers' notes are not kept: they raise no signal).
    """
    head: dict[str, Any] = {
        "id": e.event_id, "source": e.actor, "time": e.time, "subject": e.complaint_id,
        "correlationid": e.complaint_id, "causationid": e.causation_id, "type": e.type}
    if e.type == ComplaintRouted.EVENT_TYPE:
        return ComplaintRouted.model_validate({
            **head, "schemaversion": ComplaintRouted.SCHEMA_VERSION,
            "data": {**e.summary, "complaint_id": e.complaint_id}})
    if e.type == NotificationEvent.EVENT_TYPE:
        return NotificationEvent.model_validate({
            **head, "schemaversion": NotificationEvent.SCHEMA_VERSION,
            "data": {**e.summary, "complaint_id": e.complaint_id}})
    if e.type == CaseEvent.EVENT_TYPE:
        s, result = e.summary, e.summary.get("result")
        return CaseEvent.model_validate({**head, "schemaversion": CaseEvent.SCHEMA_VERSION, "data": {
            "complaint_id": e.complaint_id, "action": e.action, "actor": e.actor,
            "result": result[:5000] if isinstance(result, str) else None,  # masking may lengthen it
            "score": s.get("score"), "code": s.get("code")}})
    return None


def recompute(rebuilt: Rebuilt, *, policy: Policy, calendars: Calendars, now: datetime,
              scale: float = 1.0) -> dict[ClockKey, Clock] | None:
    """Every milestone cycle of the complaint under ``policy`` as of ``now`` (facts after ``now``
    not yet happened); None when the policy starts no clocks for it (praise, not routed)."""
    terms = next((t for r in rebuilt.routed if (t := terms_for(
        r, policy=policy.sla, version=policy.version, scale=scale)) is not None), None)
    if terms is None:
        return None
    facts = [f for f in rebuilt.facts if f.at <= now]
    cycles = fold(terms, facts, calendars)
    items, _ = owed(rebuilt.complaint_id, terms, cycles, latest_route(facts), calendars, now=now)
    ends: dict[ClockKey, dict[str, Owed]] = {}
    for item in items:  # keys: milestone:cycle:outcome[:detail]
        milestone, n, kind = item.key.split(":", 2)
        if kind in _ENDS:
            ends.setdefault((milestone, int(n)), {})[kind] = item
    out: dict[ClockKey, Clock] = {}
    for milestone, mt in terms.milestones.items():
        for c in cycles.get(milestone, []):
            end = ends.get((milestone.value, c.n), {})
            outcome = next((k for k in _ENDS if k in end), "open")
            on_time: bool | None = None
            if outcome == "met":
                on_time = end["met"].alert.on_time
            elif outcome == "breached":
                on_time = False
            deadline = c.reached(mt.target, calendars[mt.clock], project=c.end is not None)
            out[(milestone.value, c.n)] = Clock(milestone.value, c.n, terms.severity.value, outcome,
                                                on_time, deadline)
    return out


def recorded(rows: Iterable[Mapping[str, Any]]) -> dict[ClockKey, Clock]:
    """The clocks the monitor recorded (``archive_sla`` rows of one complaint)."""
    return {(r["milestone"], r["cycle"]): Clock(r["milestone"], r["cycle"], r["severity"] or "?",
                                                r["outcome"], r["on_time"], r["deadline"])
            for r in rows}


# ---- totals ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """Deadlines of one milestone (or all a person must meet) and how they ended."""

    due: int = 0  # came to an end: on time, late or breached
    on_time: int = 0
    breached: int = 0  # due and missed: met late or never met
    late: int = 0  # of the breached, met after the deadline
    cancelled: int = 0
    open: int = 0

    @property
    def rate(self) -> float | None:
        """On time of due (None with nothing due)."""
        return self.on_time / self.due if self.due else None


def tally(states: Mapping[str, int]) -> Tally:
    """The tally of a count per state."""
    on_time, late, breached = (states.get(s, 0) for s in ("on_time", "late", "breached"))
    return Tally(due=on_time + late + breached, on_time=on_time, breached=late + breached, late=late,
                 cancelled=states.get("cancelled", 0), open=states.get("open", 0))


@dataclass(frozen=True)
class Row:
    """One milestone (and severity, or ``all``): recorded, OLD and NEW side by side."""

    milestone: str  # or PERSON: every milestone a person must meet
    severity: str  # or ALL
    person: bool
    recorded: Tally
    old: Tally
    new: Tally
    changed: int  # clocks whose state differs between OLD and NEW


class Totals:
    """Counts per (milestone, severity) of recorded, OLD and NEW states, complaint by complaint."""

    def __init__(self, *, person: Mapping[str, bool]) -> None:
        self.person = person  # milestone -> met by a person
        self.states: Counter[tuple[str, str, str, str]] = Counter()  # (source, milestone, severity, state)
        self.changed: Counter[tuple[str, str]] = Counter()
        self.clocks = self.mismatches = 0
        self.examples: list[str] = []

    def add(self, complaint_id: str, *, recorded: Mapping[ClockKey, Clock],
            old: Mapping[ClockKey, Clock], new: Mapping[ClockKey, Clock]) -> None:
        """Count one complaint's clocks (``recorded`` in ``archive_sla``, OLD and NEW recomputed)."""
        for source, clocks in (("recorded", recorded), ("old", old), ("new", new)):
            for c in clocks.values():
                self.states[(source, c.milestone, c.severity, c.state)] += 1
        for key in sorted(old.keys() | new.keys()):
            a, b = old.get(key), new.get(key)
            if (a and a.state) != (b and b.state):
                either = a or b
                assert either is not None
                self.changed[(either.milestone, either.severity)] += 1
        self.clocks += len(old)
        for key in sorted(old.keys() | recorded.keys()):
            a, r = old.get(key), recorded.get(key)
            if (a and a.state) != (r and r.state):
                self.mismatches += 1
                if len(self.examples) < EXAMPLES:
                    self.examples.append(f"{complaint_id} {key[0]} cycle {key[1]}: recorded {_said(r)}, "
                                         f"recomputed {_said(a)}")

    def rows(self) -> tuple[list[Row], list[Row]]:
        """(per milestone over every severity, then the PERSON total; per milestone and severity
        where any clock ran)."""
        milestones = list(self.person) + sorted({k[1] for k in self.states} - self.person.keys())
        severities = sorted({k[2] for k in self.states})
        rows = [self._row(m, ALL, [m], severities) for m in milestones]
        rows.append(self._row(PERSON, ALL, [m for m in milestones if self.person.get(m)], severities))
        by_severity = [self._row(m, s, [m], [s]) for m in milestones for s in severities]
        return rows, [r for r in by_severity if any(_clocks(t) for t in (r.recorded, r.old, r.new))]

    def _row(self, milestone: str, severity: str, names: Sequence[str], severities: Sequence[str]) -> Row:
        def sums(source: str) -> Tally:
            return tally({st: sum(self.states[(source, m, s, st)] for m in names for s in severities)
                          for st in STATES})
        return Row(milestone, severity, milestone == PERSON or bool(self.person.get(milestone)),
                   sums("recorded"), sums("old"), sums("new"),
                   sum(self.changed[(m, s)] for m in names for s in severities))


def _clocks(t: Tally) -> int:
    return t.due + t.cancelled + t.open


def _said(clock: Clock | None) -> str:
    return clock.state if clock is not None else "nothing"
