"""What a report reads from the archive (SQLAlchemy Core): set-based, only the columns it needs.

A complaint belongs to the period in which it was received (``received_at``, local dates of
the report's time zone); every figure is over the complaints received in the period, as the
archive holds them when the report is made. Per period the report runs five statements, each
an index range over ``archive_cases.received_at`` (joined by primary or complaint-id index to
the other tables), aggregated in SQL:

- ``cells``: complaints and other feedback counted by (nature, channel, code, department,
  severity, handler) with the sums every headline and group figure needs (and, for
  suggestions, how many were adopted and declined);
- ``clocks``: the SLA deadlines that came to an end (met or breached), counted by milestone,
  cycle, handler, department (and the ``--by`` column);
- ``surveyed``: complaints whose satisfaction revisit was sent, and how many of them answered;
- ``escalations``: escalated routing decisions by the level they moved to;
- ``resolved``: one row per resolved complaint (receipt and resolution as epoch seconds, its
  groups): the only per-case rows, because handling time is counted on the business calendar
  in Python.

``weekly_counts`` counts complaints per ISO week of the trend in one statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Float,
    bindparam,
    case,
    cast,
    exists,
    func,
    select,
)

from services.archive.reports.model import Dimension, Period
from services.archive.reports.period import local_midnight, utc_bounds
from services.archive.tables import cases, events, notifications, sla

COMPLAINT = "complaint"
GROUPS: tuple[Dimension, ...] = ("channel", "code", "department", "handler", "severity")
"""The columns of a case that a report can group by (``--by``)."""
OPEN = ("open", "awaiting_customer", "reopened")
ENDED = ("met", "breached")


@dataclass(frozen=True)
class CaseCell:
    """Feedback received in a period with the same nature, channel, code, department,
    severity and handler: how many, and the sums the figures need."""

    nature: str | None
    channel: str | None
    code: str | None
    code_name_zh: str | None
    code_name_en: str | None
    department: str | None
    severity: str | None
    handler: str | None
    cases: int
    repeats: int = 0  # with repeat_of
    resolved: int = 0  # with resolved_at
    reopened: int = 0  # resolved, and reopened at least once
    answers: int = 0  # with a satisfaction score
    satisfied: int = 0  # score >= the policy's satisfied_at_least
    escalated: int = 0  # escalated at least once
    open: int = 0  # status open, awaiting_customer or reopened
    responded: int = 0  # with a first response (acknowledged_at)
    response_seconds: float = 0.0  # sum of receipt -> first response
    adopted: int = 0  # a suggestion's assessment: adopted
    declined: int = 0  # declined

    def key(self, dimension: str) -> str | None:
        """The cell's value of a dimension (channel, code, department, handler, severity, nature)."""
        value: str | None = getattr(self, dimension)
        return value


@dataclass(frozen=True)
class ClockCell:
    """SLA deadlines of one milestone and cycle that came to an end, for one group of cases."""

    milestone: str
    cycle: int
    groups: dict[str, str | None] = field(hash=False)  # handler, department, and the --by column
    due: int  # met or breached
    on_time: int  # met by the deadline


@dataclass(frozen=True)
class Resolved:
    """The resolved complaints of a period, column by column (entry i is one complaint): when
    each was received and (last) resolved, in seconds since the epoch, and its groups."""

    received: list[float]
    resolved: list[float]
    groups: dict[str, list[str | None]] = field(hash=False)  # handler, department, the --by column


@dataclass(frozen=True)
class PeriodRows:
    """Everything a report reads about the complaints received in one period."""

    cells: list[CaseCell]
    clocks: list[ClockCell]
    surveyed: int  # complaints with a revisit notification sent
    surveyed_answered: int  # of those, with a satisfaction score
    escalations: dict[str, int]  # level moved to -> escalated decisions
    resolved: Resolved


@dataclass(frozen=True)
class ReportRows:
    """The rows of a report: its period, the previous one, and the weekly counts of the trend."""

    current: PeriodRows
    previous: PeriodRows
    weeks: list[tuple[date, int]]  # (Monday, complaints received that ISO week)


def read_rows(engine: Engine, *, period: Period, previous: Period, weeks: Sequence[date],
              by: Dimension | None, satisfied_at_least: int) -> ReportRows:
    """Read both periods and the trend in one read-only transaction (one snapshot)."""
    with _reading(engine) as conn:
        return ReportRows(
            current=read_period(conn, period, by=by, satisfied_at_least=satisfied_at_least),
            previous=read_period(conn, previous, by=by, satisfied_at_least=satisfied_at_least),
            weeks=list(zip(weeks, weekly_counts(conn, weeks, timezone=period.timezone), strict=True)))


def read_period(conn: Connection, period: Period, *, by: Dimension | None,
                satisfied_at_least: int) -> PeriodRows:
    """The rows of the complaints (and, in ``cells``, all feedback) received in the period."""
    start, end = utc_bounds(period)
    received = (cases.c.received_at >= start) & (cases.c.received_at < end)
    complaint = received & (cases.c.nature == COMPLAINT)
    return PeriodRows(
        cells=_cells(conn, received, satisfied_at_least),
        clocks=_clocks(conn, complaint, by),
        **_surveyed(conn, complaint),
        escalations=_escalations(conn, complaint),
        resolved=_resolved(conn, complaint, by))


def weekly_counts(conn: Connection, weeks: Sequence[date], *, timezone: str) -> list[int]:
    """Complaints received in each ISO week starting on the given Mondays (local, consecutive)."""
    if not weeks:
        return []
    bounds = [local_midnight(w, timezone) for w in weeks]
    bounds.append(local_midnight(date.fromordinal(weeks[-1].toordinal() + 7), timezone))
    bucket: ColumnElement[Any]
    if conn.dialect.name == "postgresql":  # a binary search over the weeks' first instants
        starts = bindparam("week_starts", bounds[:-1], type_=ARRAY(DateTime(timezone=True)))
        bucket = func.width_bucket(cases.c.received_at, starts) - 1
    else:
        bucket = case(*((cases.c.received_at < b, i) for i, b in enumerate(bounds[1:])), else_=-1)
    inner = (select(bucket.label("week"))
             .where(cases.c.nature == COMPLAINT, cases.c.received_at >= bounds[0],
                    cases.c.received_at < bounds[-1])
             .subquery())
    stmt = select(inner.c.week, func.count()).group_by(inner.c.week)
    counts: dict[int, int] = dict(conn.execute(stmt).all())
    return [int(counts.get(i, 0)) for i in range(len(weeks))]


# ---- the statements ------------------------------------------------------------------


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: a repeatable snapshot on PostgreSQL, a deferred one on SQLite."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            conn.execution_options(sqlite_begin="DEFERRED")  # no write lock (database.make_engine)
        with conn.begin():
            if engine.dialect.name == "postgresql":
                # Every statement is an index range joined by index: compiling it (JIT) costs more
                # than it saves, the default random_page_cost (4, for spinning disks) makes the
                # planner scan whole tables instead, and grouping wants its hash table in memory.
                # For this transaction only.
                conn.exec_driver_sql("SET LOCAL jit = off")
                conn.exec_driver_sql("SET LOCAL random_page_cost = 1.1")
                conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
            yield conn


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _epoch(conn: Connection, at: Any) -> ColumnElement[Any]:
    """A timestamp column as seconds since the epoch (a float), on either database."""
    if conn.dialect.name == "postgresql":
        return cast(func.extract("epoch", at), Float)
    return (func.julianday(at) - 2440587.5) * 86400.0  # SQLite keeps naive UTC text


_CELL = ("nature", "channel", "code", "code_name_zh", "code_name_en", "department", "severity",
         "handler")


def _cells(conn: Connection, received: ColumnElement[bool], satisfied_at_least: int) -> list[CaseCell]:
    c = cases.c
    keys = [c[name] for name in _CELL]
    responded = c.acknowledged_at.is_not(None) & c.received_at.is_not(None)
    response = _epoch(conn, c.acknowledged_at) - _epoch(conn, c.received_at)
    stmt = (select(
        *keys, func.count(),
        _count_if(c.repeat_of.is_not(None)),
        _count_if(c.resolved_at.is_not(None)),
        _count_if(c.resolved_at.is_not(None) & (c.reopen_count > 0)),
        func.count(c.satisfaction_score),
        _count_if(c.satisfaction_score >= satisfied_at_least),
        _count_if(c.escalation_count > 0),
        _count_if(c.status.in_(OPEN)),
        _count_if(responded),
        _count_if(c.assessment_decision == "adopted"),
        _count_if(c.assessment_decision == "declined"),
        func.coalesce(func.sum(case((responded, response), else_=0.0)), 0.0),
    ).where(received).group_by(*keys))
    sums = ("cases", "repeats", "resolved", "reopened", "answers", "satisfied", "escalated", "open",
            "responded", "adopted", "declined")
    cells = []
    for row in conn.execute(stmt).all():
        fields: dict[str, Any] = dict(zip(_CELL, row[:len(_CELL)], strict=True))
        fields.update((k, int(v)) for k, v in zip(sums, row[len(_CELL):-1], strict=True))
        cells.append(CaseCell(**fields, response_seconds=float(row[-1])))
    return cells


def _clock_groups(by: Dimension | None) -> list[str]:
    return ["handler", "department", *([by] if by and by not in ("handler", "department") else [])]


def _clocks(conn: Connection, complaint: ColumnElement[bool], by: Dimension | None) -> list[ClockCell]:
    names = _clock_groups(by)
    groups = [cases.c[n] for n in names]
    stmt = (select(sla.c.milestone, sla.c.cycle, *groups, func.count(),
                   _count_if(sla.c.on_time.is_(True)))
            .select_from(sla.join(cases, sla.c.complaint_id == cases.c.complaint_id))
            .where(complaint, sla.c.outcome.in_(ENDED))
            .group_by(sla.c.milestone, sla.c.cycle, *groups))
    return [ClockCell(milestone=row[0], cycle=int(row[1]), groups=dict(zip(names, row[2:-2], strict=True)),
                      due=int(row[-2]), on_time=int(row[-1]))
            for row in conn.execute(stmt).all()]


def _surveyed(conn: Connection, complaint: ColumnElement[bool]) -> dict[str, int]:
    n = notifications.c
    revisit_sent = exists().where(n.complaint_id == cases.c.complaint_id, n.kind == "revisit",
                                  n.status == "sent")
    row = conn.execute(select(func.count(), func.count(cases.c.satisfaction_score))
                       .where(complaint, revisit_sent)).one()
    return {"surveyed": int(row[0]), "surveyed_answered": int(row[1])}


def _escalations(conn: Connection, complaint: ColumnElement[bool]) -> dict[str, int]:
    level = events.c.summary["level"].as_string()
    inner = (select(level.label("level"))
             .select_from(events.join(cases, events.c.complaint_id == cases.c.complaint_id))
             .where(complaint, cases.c.escalation_count > 0,  # the fold's count: only their trails
                    events.c.type == "complaint.routed", events.c.action == "escalated")
             .subquery())
    rows = conn.execute(select(inner.c.level, func.count()).group_by(inner.c.level)).all()
    return {str(lv): int(n) for lv, n in rows if lv is not None}


def _resolved(conn: Connection, complaint: ColumnElement[bool], by: Dimension | None) -> Resolved:
    c = cases.c
    names = _clock_groups(by)
    stmt = (select(_epoch(conn, c.received_at), _epoch(conn, c.resolved_at), *(c[g] for g in names))
            .where(complaint, c.resolved_at.is_not(None), c.received_at.is_not(None)))
    columns = list(zip(*conn.execute(stmt).all(), strict=True)) or [()] * (2 + len(names))
    return Resolved(received=[float(v) for v in columns[0]], resolved=[float(v) for v in columns[1]],
                    groups={g: list(col) for g, col in zip(names, columns[2:], strict=True)})
