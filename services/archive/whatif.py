"""What if another policy had been in force: every archived complaint's deadlines recomputed.

For each complaint received in a range of local dates, the facts the SLA monitor folds are
rebuilt from its audit trail and the monitor's own pure rules give every milestone cycle's
deadline and outcome as of ``now``, under the current policy (OLD) and a proposed one (NEW)
(``services.archive.recompute``: the states, and what *due*, *breached* and the rate count).
The outcomes the monitor recorded (``archive_sla``) stand beside OLD as a check: under the
policy that ran, OLD recomputed is what was recorded, and every mismatch is counted.

Reading is set-based and streamed: one ordered query for the range's events, one for its
recorded clocks, merged by complaint id, ``chunk`` rows fetched at a time (a server-side
cursor on PostgreSQL), so only one complaint's trail is in memory at once.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, Engine, Select, func, select

from schemas.events import CaseEvent, ComplaintRouted, Milestone, NotificationEvent
from services.archive.recompute import (
    PERSON,
    Row,
    Tally,
    Totals,
    person_milestone,
    rebuild,
    recompute,
    recorded,
)
from services.archive.records import ArchivedEvent
from services.archive.tables import cases, events, sla
from services.common.policy import Policy
from services.sla_monitor.logic import Calendars

_TRAIL = tuple(events.c[f.name] for f in dataclasses.fields(ArchivedEvent))  # in field order
Group = tuple[str, list[Any]]  # a complaint id and its rows


def day_range(date_from: date, date_to: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants [start of ``date_from``, end of ``date_to``) of local dates in ``tz``."""
    start = datetime.combine(date_from, time(), tz)
    end = datetime.combine(date_to + timedelta(days=1), time(), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


@dataclass(frozen=True)
class WhatIf:
    """Timeliness and breaches per milestone, old beside new, over a range of receipt dates."""

    date_from: date
    date_to: date  # included
    timezone: str
    now: datetime
    policy_old: str
    policy_new: str
    complaints: int  # received in the range
    with_clocks: int  # of which have clocks (recomputed or recorded): complaints, routed
    unreadable: int  # archived events whose envelope could not be restored (skipped)
    rows: list[Row]  # per milestone over every severity, then the PERSON total
    by_severity: list[Row]  # per milestone and severity (those with any clock)
    clocks: int  # clocks recomputed under OLD
    mismatches: int  # clocks whose OLD state is not the recorded one (or only one side has it)
    mismatch_examples: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready data: dates ISO 8601, each tally with its rate."""
        def plain(value: Any) -> Any:
            if isinstance(value, Tally):
                return {**dataclasses.asdict(value), "rate": value.rate}
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, datetime | date):
                return value.isoformat()
            if isinstance(value, list):
                return [plain(v) for v in value]
            return value
        return plain(self)  # type: ignore[no-any-return]


def whatif(engine: Engine, *, policy_new: Policy, policy_old: Policy, calendars: Calendars,
           date_from: date, date_to: date, tz: ZoneInfo, now: datetime, scale: float = 1.0,
           chunk: int = 2000) -> WhatIf:
    """Recompute the clocks of every complaint received from ``date_from`` to ``date_to``
    (local dates in ``tz``, both included) under both policies as of ``now``, and total them
    beside the recorded ones (``scale``: COMPLAINTS_SLA_SCALE, as the monitor ran)."""
    totals = Totals(person={  # in the milestones' order; OLD says who meets one both policies have
        m.value: person_milestone(rule) for m in Milestone
        if (rule := policy_old.sla.milestones.get(m) or policy_new.sla.milestones.get(m)) is not None})
    start, end = day_range(date_from, date_to, tz)
    received = (cases.c.received_at >= start) & (cases.c.received_at < end)
    with_clocks = unreadable = 0
    with _reading(engine) as conn:
        complaints = conn.execute(select(func.count()).select_from(cases).where(received)).scalar_one()
        trails = _stream(conn, _events_query(conn, received), chunk, lambda r: ArchivedEvent(*r))
        clocks = _stream(conn, _sla_query(conn, received), chunk, lambda r: dict(r._mapping))
        for cid, trail, rows in _merge(trails, clocks):
            rebuilt = rebuild(cid, trail)
            unreadable += rebuilt.unreadable
            old = recompute(rebuilt, policy=policy_old, calendars=calendars, now=now, scale=scale)
            new = recompute(rebuilt, policy=policy_new, calendars=calendars, now=now, scale=scale)
            if old is None and new is None and not rows:
                continue
            with_clocks += 1
            totals.add(cid, recorded=recorded(rows), old=old or {}, new=new or {})
    rows, by_severity = totals.rows()
    return WhatIf(date_from=date_from, date_to=date_to, timezone=tz.key, now=now,
                  policy_old=policy_old.version, policy_new=policy_new.version, complaints=complaints,
                  with_clocks=with_clocks, unreadable=unreadable, rows=rows, by_severity=by_severity,
                  clocks=totals.clocks, mismatches=totals.mismatches, mismatch_examples=totals.examples)


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """One read-only transaction (on SQLite a deferred one, so it holds no write lock)."""
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="DEFERRED")
        with conn.begin():
            yield conn


def _by_complaint(conn: Connection, column: Any) -> Any:
    """Complaint ids in code-point order on every database (the order Python's ``<`` knows)."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def _events_query(conn: Connection, received: ColumnElement[bool]) -> Select[Any]:
    """The events the clocks read (routing decisions, case actions, sent notifications) of the
    complaints received in the range, by complaint, in trail order."""
    theirs = (events.c.type.in_([ComplaintRouted.EVENT_TYPE, CaseEvent.EVENT_TYPE])
              | ((events.c.type == NotificationEvent.EVENT_TYPE) & (events.c.action == "sent")))
    return (select(*_TRAIL).join(cases, cases.c.complaint_id == events.c.complaint_id)
            .where(received & theirs)
            .order_by(_by_complaint(conn, events.c.complaint_id), events.c.time, events.c.event_id))


def _sla_query(conn: Connection, received: ColumnElement[bool]) -> Select[Any]:
    """The recorded clocks of the complaints received in the range, by complaint."""
    return (select(sla.c.complaint_id, sla.c.milestone, sla.c.cycle, sla.c.severity, sla.c.outcome,
                   sla.c.on_time, sla.c.deadline)
            .join(cases, cases.c.complaint_id == sla.c.complaint_id).where(received)
            .order_by(_by_complaint(conn, sla.c.complaint_id), sla.c.milestone, sla.c.cycle))


def _stream(conn: Connection, query: Select[Any], chunk: int, make: Callable[[Any], Any]) -> Iterator[Group]:
    """(complaint id, its rows made into objects) in the query's order, ``chunk`` rows a fetch."""
    result = conn.execution_options(yield_per=chunk).execute(query)
    for cid, group in itertools.groupby(result, key=lambda r: str(r.complaint_id)):
        yield cid, [make(r) for r in group]


def _merge(trails: Iterator[Group], clocks: Iterator[Group]) -> Iterator[tuple[str, list[Any], list[Any]]]:
    """(complaint id, its events, its recorded clocks) from two streams in complaint order."""
    head = next(clocks, None)
    for cid, trail in trails:
        while head is not None and head[0] < cid:  # recorded clocks, no events read: count them
            yield head[0], [], head[1]
            head = next(clocks, None)
        rows: list[Any] = []
        if head is not None and head[0] == cid:
            rows, head = head[1], next(clocks, None)
        yield cid, trail, rows
    while head is not None:
        yield head[0], [], head[1]
        head = next(clocks, None)


# ---- the table --------------------------------------------------------------------------


def render(w: WhatIf, *, policy_file: str) -> str:
    """The what-if as a plain-text table: per milestone old -> new, and the check against the record."""
    lines = [
        f"what-if over {w.complaints} complaints received {w.date_from} .. {w.date_to} ({w.timezone}), "
        f"clocks as of {w.now.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        f"policy {w.policy_old} (in force) -> {w.policy_new} ({policy_file})",
        f"{w.with_clocks} with deadlines, {w.complaints - w.with_clocks} without (praise, suggestions, "
        "not routed)" + (f"; {w.unreadable} archived events unreadable, skipped" if w.unreadable else ""),
        "", *_table(w.rows, second="who"), "",
        "due: deadlines that came to an end (met or breached); breached: missed, met late or not at "
        "all; rate: on time / due; person total: the milestones a person must meet; recorded: what "
        "the monitor recorded (archive_sla).",
    ]
    changed = [r for r in w.by_severity if r.changed]
    if changed:
        lines += ["", "by severity, where an outcome changed:", *_table(changed, second="severity")]
    lines.append(f"\ncheck: the recorded outcomes (archive_sla) beside {w.policy_old} recomputed: "
                 f"{w.clocks} clocks, {w.mismatches} mismatches")
    if w.mismatches:
        lines.append("  (expected where a case ran under another policy version or scale, or "
                     "where --as-of is before the record)")
        lines += [f"  {m}" for m in w.mismatch_examples]
    return "\n".join(lines)


def _table(rows: list[Row], *, second: str) -> list[str]:
    """Aligned columns, each figure old -> new."""
    def pct(rate: float | None) -> str:
        return "-" if rate is None else f"{rate:.1%}"

    head = ["milestone", second, "due", "on time", "breached", "rate", "open", "changed", "recorded"]
    body = [[("person total" if r.milestone == PERSON else r.milestone),
             (("person" if r.person else "auto") if second == "who" else r.severity),
             f"{r.old.due} -> {r.new.due}", f"{r.old.on_time} -> {r.new.on_time}",
             f"{r.old.breached} -> {r.new.breached}", f"{pct(r.old.rate)} -> {pct(r.new.rate)}",
             f"{r.old.open} -> {r.new.open}", str(r.changed),
             f"{r.recorded.on_time}/{r.recorded.due} on time"] for r in rows]
    widths = [max(len(cells[i]) for cells in [head, *body]) for i in range(len(head))]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip() for cells in [head, *body]]
