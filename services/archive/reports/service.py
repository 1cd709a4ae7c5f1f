"""A report from the archive: read the rows (``query``), count working time on the business
calendar, compute the figures (``figures``) and the trend (``forecast``)."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from services.archive.reports import figures, forecast
from services.archive.reports.model import Dimension, Period, Report
from services.archive.reports.period import local_date, previous_period
from services.archive.reports.query import read_rows
from services.common.policy import Policy
from services.sla_monitor.calendar import BusinessCalendar

_DAY = timedelta(days=1)


def build_report(engine: Engine, *, period: Period, by: Dimension | None, policy: Policy,
                 calendar: BusinessCalendar, now: datetime) -> Report:
    """The report over ``period`` (beside the period before it), as the archive stands now."""
    rules = policy.reports
    today = local_date(now, period.timezone)
    previous = previous_period(period)
    weeks = forecast.trend_weeks(period, weeks=rules.trend_weeks, today=today)
    rows = read_rows(engine, period=period, previous=previous, weeks=weeks, by=by,
                     satisfied_at_least=rules.satisfied_at_least)
    working = WorkingTime(calendar, [t for p in (rows.current, rows.previous)
                                     for t in (*p.resolved.received, *p.resolved.resolved)])
    return figures.build(
        rows, period=period, previous=previous, by=by, policy=rules,
        milestones=figures.person_milestones(policy.sla), policy_version=policy.version,
        days=working.days, now=now, today=today,
        trend=forecast.trend(rows.weeks, horizon=rules.forecast_weeks, interval=rules.interval,
                             spike=rules.spike))


def hours_per_day(calendar: BusinessCalendar) -> float:
    """The length of the calendar's usual working day: the most common length among the weekdays
    that are open, the longer one on a tie (the shipped calendar: 8 hours; always open: 24)."""
    lengths = [sum(_minutes(span) for span in spans) for spans in calendar.hours.values()]
    common = Counter(n for n in lengths if n > 0).most_common()
    if not common:
        return 24.0
    return max(n for n, k in common if k == common[0][1]) / 60


def _minutes(span: str) -> int:
    """Minutes of a validated span "HH:MM-HH:MM"."""
    (h1, m1), (h2, m2) = (part.split(":") for part in span.split("-"))
    return (int(h2) * 60 + int(m2)) - (int(h1) * 60 + int(m1))


class WorkingTime:
    """``calendar.elapsed`` for many instants at once, in seconds since the epoch: the business
    intervals of the dates spanned are laid end to end once, with running totals, so a pair
    costs two binary searches instead of a walk over its days. Equal to ``calendar.elapsed``."""

    def __init__(self, calendar: BusinessCalendar, instants: Iterable[float]) -> None:
        self.hours_per_day = hours_per_day(calendar)
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.before: list[float] = []  # business seconds before each interval
        seen = list(instants)
        if not seen:
            return
        day = datetime.fromtimestamp(min(seen), UTC).date() - 2 * _DAY
        last = datetime.fromtimestamp(max(seen), UTC).date() + 2 * _DAY
        total = 0.0
        while day <= last:
            for a_at, b_at in calendar.intervals(day):
                a, b = a_at.timestamp(), b_at.timestamp()
                if self.ends and a < self.ends[-1]:  # never for distinct local dates; be safe
                    a = self.ends[-1]
                if a < b:
                    self.starts.append(a)
                    self.ends.append(b)
                    self.before.append(total)
                    total += b - a
            day += _DAY

    def _upto(self, at: float) -> float:
        """Business seconds from the first interval up to ``at``."""
        i = bisect.bisect_right(self.starts, at) - 1
        if i < 0:
            return 0.0
        return self.before[i] + min(at, self.ends[i]) - self.starts[i]

    def elapsed(self, start: float, end: float) -> float:
        """Business seconds in [start, end); zero if ``end`` is not after ``start``."""
        return max(self._upto(end) - self._upto(start), 0.0) if end > start else 0.0

    def days(self, start: float, end: float) -> float:
        """Working days in [start, end): business hours over the usual working day's hours."""
        return self.elapsed(start, end) / 3600 / self.hours_per_day
