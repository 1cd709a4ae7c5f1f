"""A report's period from ``--month YYYY-MM`` or ``--from D --to D``, and the one before it.

Dates are local dates in the report's time zone; ``--to`` is inclusive (``Period.end`` is the
day after it). The previous period is the calendar month before a month, and otherwise the
same number of days immediately before the range. Pure: today is an argument.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.archive.reports.model import Period

MAX_DAYS = 366
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PeriodError(ValueError):
    """A period the report cannot be made for: names the option (month, from, to) and the problem."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"--{option}: {problem}")
        self.option, self.problem = option, problem


def parse_period(*, month: str | None = None, start: str | None = None, end: str | None = None,
                 timezone: str, today: date) -> tuple[Period, Period]:
    """The period asked for and the previous one; ``today`` is the local date in ``timezone``.

    Raises ``PeriodError`` for a missing or doubled option, a bad format, ``--from`` after
    ``--to``, a month or start date in the future, or a range over 366 days.
    """
    if month is not None:
        if start is not None or end is not None:
            raise PeriodError("month", "give --month or --from/--to, not both")
        period = month_period(month, timezone=timezone, today=today)
    elif start is None and end is None:
        raise PeriodError("month", "give --month YYYY-MM, or --from YYYY-MM-DD --to YYYY-MM-DD")
    elif start is None or end is None:
        missing = "from" if start is None else "to"
        raise PeriodError(missing, f"missing: --{'to' if missing == 'from' else 'from'} needs --{missing}")
    else:
        period = range_period(start, end, timezone=timezone, today=today)
    return period, previous_period(period)


def month_period(text: str, *, timezone: str, today: date) -> Period:
    """The calendar month ``YYYY-MM`` (the current month is allowed, a future one is not)."""
    m = _MONTH.match(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise PeriodError("month", f"{text!r} is not a month: use YYYY-MM, e.g. 2026-11")
    start = date(int(m.group(1)), int(m.group(2)), 1)
    if start > today:
        raise PeriodError("month", f"{start:%Y-%m} has not begun (today is {today.isoformat()})")
    return Period(start=start, end=_next_month(start), timezone=timezone, label=f"{start:%Y-%m}")


def range_period(start_text: str, end_text: str, *, timezone: str, today: date) -> Period:
    """Inclusive local dates ``start..end``: at most 366 days, starting no later than today."""
    start, end = _date("from", start_text), _date("to", end_text)
    if start > end:
        raise PeriodError("from", f"{start.isoformat()} is after --to {end.isoformat()}")
    if start > today:
        raise PeriodError("from", f"{start.isoformat()} is in the future (today is {today.isoformat()})")
    days = (end - start).days + 1
    if days > MAX_DAYS:
        raise PeriodError("to", f"the range spans {days} days; at most {MAX_DAYS}")
    return Period(start=start, end=end + timedelta(days=1), timezone=timezone,
                  label=f"{start.isoformat()}..{end.isoformat()}")


def previous_period(period: Period) -> Period:
    """The month before a whole calendar month; else the same number of days just before."""
    if is_month(period):
        start = (period.start - timedelta(days=1)).replace(day=1)
        return Period(start=start, end=period.start, timezone=period.timezone, label=f"{start:%Y-%m}")
    start = period.start - (period.end - period.start)
    last = period.start - timedelta(days=1)
    return Period(start=start, end=period.start, timezone=period.timezone,
                  label=f"{start.isoformat()}..{last.isoformat()}")


def is_month(period: Period) -> bool:
    """Whether the period is exactly one calendar month."""
    return period.start.day == 1 and period.end == _next_month(period.start)


def utc_bounds(period: Period) -> tuple[datetime, datetime]:
    """The period as UTC instants [start, end): local midnights in its time zone."""
    return local_midnight(period.start, period.timezone), local_midnight(period.end, period.timezone)


def local_midnight(day: date, timezone: str) -> datetime:
    """The instant (UTC) at which the local date ``day`` begins in ``timezone``."""
    return datetime.combine(day, time(), ZoneInfo(timezone)).astimezone(UTC)


def local_date(at: datetime, timezone: str) -> date:
    """The local date of an aware instant in ``timezone``."""
    return at.astimezone(ZoneInfo(timezone)).date()


def _date(option: str, text: str) -> date:
    if not _DATE.match(text.strip()):
        raise PeriodError(option, f"{text!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-01")
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise PeriodError(option, f"{text!r} is not a date of the calendar") from None


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)
