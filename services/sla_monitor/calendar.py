"""Business calendar: opening hours, public holidays and make-up working days (调休).

A deadline of "3 working days" is counted in business time: the clock runs only while
the calendar is open. The shipped calendar is ``calendars/cn.yaml`` next to this module.

Which hours apply on a LOCAL date (in the calendar's time zone), first match wins:

1. ``overrides``: the exact spans of that date (``[]`` = closed);
2. ``holidays``: closed all day;
3. ``workdays``: a make-up working day, open with ``workday_hours`` even on a weekend;
4. ``hours`` of the weekday.

An instant is open iff its local wall-clock time lies in a span ``[start, end)`` of its
local date. This holds exactly across daylight-saving changes: wall times skipped by a
spring-forward never occur, and wall times repeated by a fall-back are open twice.

A calendar may name an iCalendar file of holidays and make-up days (``ical``); reading
it is ``services.sla_monitor.ical``. Pure: no I/O except loading the calendar files.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from services.common.errors import ConfigError
from services.common.policy import TimeZoneName, load_yaml_model
from services.sla_monitor.ical import parse_ical

DEFAULT_CALENDAR = Path(__file__).with_name("calendars") / "cn.yaml"
ALWAYS_OPEN = Path(__file__).with_name("calendars") / "always.yaml"  # open around the clock (UTC)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEARCH_DAYS = 3660  # add() gives up after this many days without any business hours

Interval = tuple[datetime, datetime]
Minutes = tuple[tuple[int, int], ...]  # spans of one day in minutes since local midnight

_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_ZERO = timedelta(0)
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
_PROBE = timedelta(minutes=15)
_CACHE_LIMIT = 50_000
# the last date whose UTC window (date - 1 day .. date + 2 days) fits in a datetime
_LAST_DAY = date.max - timedelta(days=3)
_FIRST_DAY = date.min + timedelta(days=2)


# -- spans ----------------------------------------------------------------------------------------

def _parse_span(text: str) -> tuple[int, int]:
    m = _SPAN.match(text)
    if not m:
        raise ValueError(f"not a span: {text!r} (use HH:MM-HH:MM, e.g. 09:00-12:00)")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError(f"not a time of day in span {text!r} (00:00 to 24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        raise ValueError(f"span {text!r} must end after it starts (no overnight spans: "
                         f"end the day at 24:00 and go on at 00:00)")
    return start, end


def _check_span(text: str) -> str:
    _parse_span(text)
    return text


def _check_spans(spans: list[str]) -> list[str]:
    ordered = sorted((_parse_span(s), s) for s in spans)
    for (first, a), (second, b) in zip(ordered, ordered[1:], strict=False):
        if second[0] < first[1]:
            raise ValueError(f"spans {a!r} and {b!r} overlap")
    return spans


Span = Annotated[str, AfterValidator(_check_span)]
Spans = Annotated[list[Span], AfterValidator(_check_spans)]


def _minutes(spans: list[str]) -> Minutes:
    """Sorted spans in minutes, adjacent ones merged."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(_parse_span(s) for s in spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


# -- time-zone offsets ----------------------------------------------------------------------------

def _offset(zone: ZoneInfo, at: datetime) -> timedelta:
    return at.astimezone(zone).utcoffset() or _ZERO


@lru_cache(maxsize=8192)
def _offsets_of_day(zone: ZoneInfo, day: date) -> tuple[timedelta, tuple[tuple[datetime, timedelta], ...]]:
    """The UTC offset at ``day`` 00:00 UTC, and each change in (day 00:00, day + 1 00:00] UTC.

    Probes every 15 minutes and bisects each change down to the second (tz data changes
    offsets on whole seconds); a change is reported at its first instant.
    """
    lo = datetime.combine(day, time(), UTC)
    first = before = _offset(zone, lo)
    changes: list[tuple[datetime, timedelta]] = []
    probe = lo
    for _ in range(96):
        nxt = probe + _PROBE
        after = _offset(zone, nxt)
        if after != before:
            a, b = probe, nxt  # offset(a) == before, offset(b) != before
            while b - a > _SECOND:
                mid = a + (b - a) // 2
                mid -= timedelta(microseconds=mid.microsecond)
                if _offset(zone, mid) == before:
                    a = mid
                else:
                    b = mid
            changes.append((b, _offset(zone, b)))
        probe, before = nxt, after
    return first, tuple(changes)


def _segments(zone: ZoneInfo, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime, timedelta]]:
    """[lo, hi) (UTC midnights) split into pieces of constant UTC offset."""
    first = lo.date()
    offset, _ = _offsets_of_day(zone, first)
    segments: list[tuple[datetime, datetime, timedelta]] = []
    start = lo
    for k in range((hi - lo).days):
        for at, new in _offsets_of_day(zone, first + timedelta(days=k))[1]:
            if at < hi:
                segments.append((start, at, offset))
                start, offset = at, new
    segments.append((start, hi, offset))
    return segments


def _day_intervals(zone: ZoneInfo, day: date, spans: Minutes) -> tuple[Interval, ...]:
    """The UTC instants whose local wall time lies in ``spans`` of the local date ``day``."""
    if not spans:
        return ()
    wall_midnight = datetime.combine(day, time(), UTC)  # wall time written as if it were UTC
    pieces: list[Interval] = []
    # a UTC offset is strictly within +-24 h, so the instants of this date lie in this window
    for seg_start, seg_end, offset in _segments(zone, wall_midnight - _DAY, wall_midnight + 2 * _DAY):
        base = wall_midnight - offset  # instant = wall - offset within this segment
        for start, end in spans:
            a = max(seg_start, base + timedelta(minutes=start))
            b = min(seg_end, base + timedelta(minutes=end))
            if a < b:
                pieces.append((a, b))
    pieces.sort()
    merged: list[Interval] = []
    for a, b in pieces:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return tuple(merged)


def _utc(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {at.isoformat()}")
    return at.astimezone(UTC)


class _IntervalCache(dict[date, tuple[Interval, ...]]):
    """Per-date intervals. Only a cache: it never makes two equal calendars unequal."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _IntervalCache)


# -- the calendar ---------------------------------------------------------------------------------

class BusinessCalendar(BaseModel):
    """Opening hours of a business in one time zone, with holidays and make-up working days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    timezone: TimeZoneName = Field(description="IANA time zone the hours are read in, e.g. Asia/Shanghai.")
    hours: dict[str, Spans] = Field(description="mon..sun (all seven): spans 'HH:MM-HH:MM'; [] = closed.")
    holidays: dict[date, str] = Field(default_factory=dict, description="Closed all day; value: name.")
    workdays: dict[date, str] = Field(default_factory=dict,
                                      description="Make-up working days (调休), open with workday_hours.")
    workday_hours: Spans = Field(default_factory=list, validate_default=True)
    overrides: dict[date, Spans] = Field(default_factory=dict,
                                         description="Exact hours of a date ([] = closed); wins over all.")
    ical: str | None = Field(default=None, description="An .ics file (relative to the YAML file) merged "
                                                       "into holidays and workdays by load_calendar.")

    _zone: ZoneInfo = PrivateAttr()
    _weekly: tuple[Minutes, ...] = PrivateAttr()
    _workday: Minutes = PrivateAttr()
    _override: dict[date, Minutes] = PrivateAttr()
    _cache: _IntervalCache = PrivateAttr(default_factory=_IntervalCache)

    @field_validator("hours")
    @classmethod
    def _seven_days(cls, hours: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = [k for k in hours if k not in DAYS]
        if unknown:
            raise ValueError(f"unknown day {unknown[0]!r} (use {', '.join(DAYS)})")
        missing = [d for d in DAYS if d not in hours]
        if missing:
            raise ValueError(f"missing days {', '.join(missing)} (list all seven; [] = closed)")
        return hours

    @field_validator("workdays")
    @classmethod
    def _not_holidays(cls, workdays: dict[date, str], info: ValidationInfo) -> dict[date, str]:
        holidays: dict[date, str] = info.data.get("holidays", {})
        both = sorted(d for d in workdays if d in holidays)
        if both:
            listed = ", ".join(f"{d.isoformat()} ({holidays[d]} / {workdays[d]})" for d in both)
            raise ValueError(f"a date cannot be both a holiday and a workday: {listed}")
        return workdays

    @field_validator("workday_hours")
    @classmethod
    def _needed(cls, spans: list[str], info: ValidationInfo) -> list[str]:
        if not spans and info.data.get("workdays"):
            raise ValueError("must not be empty when workdays are listed")
        return spans

    def model_post_init(self, context: Any, /) -> None:
        self._zone = ZoneInfo(self.timezone)
        self._weekly = tuple(_minutes(self.hours[d]) for d in DAYS)
        self._workday = _minutes(self.workday_hours)
        self._override = {d: _minutes(spans) for d, spans in self.overrides.items()}

    def _spans_on(self, day: date) -> Minutes:
        if day in self._override:
            return self._override[day]
        if day in self.holidays:
            return ()
        if day in self.workdays:
            return self._workday
        return self._weekly[day.weekday()]

    def _intervals(self, day: date) -> tuple[Interval, ...]:
        hit = self._cache.get(day)
        if hit is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            hit = self._cache[day] = _day_intervals(self._zone, day, self._spans_on(day))
        return hit

    def intervals(self, day: date) -> list[Interval]:
        """Business intervals of the LOCAL date ``day`` as UTC instants, sorted, adjacent ones merged."""
        return list(self._intervals(day))

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` (timezone-aware) is within business hours."""
        wall = _utc(at, "at").astimezone(self._zone)
        minute = wall.hour * 60 + wall.minute
        return any(start <= minute < end for start, end in self._spans_on(wall.date()))

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time in [start, end); zero if ``end`` is not after ``start``."""
        start, end = _utc(start, "start"), _utc(end, "end")
        if end <= start:
            return _ZERO
        total = _ZERO
        # the instants of local date d lie in UTC [d - 1 day, d + 2 days)
        day = max(start.date() - 2 * _DAY, _FIRST_DAY)
        last = min(end.date() + _DAY, _LAST_DAY)
        while day <= last:
            for a, b in self._intervals(day):
                lo, hi = max(a, start), min(b, end)
                if lo < hi:
                    total += hi - lo
            day += _DAY
        return total

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant at which the business time elapsed since ``start`` reaches ``duration``.

        Counting starts at the next opening if ``start`` is outside business hours; a
        duration that ends exactly at the end of an interval gives that end.
        """
        start = _utc(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        if not duration:
            return start
        remaining = duration
        for a, b in self._walk(start):
            a = max(a, start)
            if remaining <= b - a:
                return a + remaining
            remaining -= b - a
        raise AssertionError("unreachable: _walk never ends")  # pragma: no cover

    def _walk(self, start: datetime) -> Iterator[Interval]:
        """Business intervals ending after ``start``, in time order (endless; raises after
        SEARCH_DAYS without any)."""
        day = max(start.date() - 2 * _DAY, _FIRST_DAY)
        pending: list[Interval] = []
        since = start
        while True:
            if day > _LAST_DAY:
                raise self._unreachable(since)
            for interval in self._intervals(day):
                if interval[1] > start:
                    heapq.heappush(pending, interval)
            # dates after this one only have instants from this date's midnight (as UTC) on
            horizon = datetime.combine(day, time(), UTC)
            while pending and pending[0][0] < horizon:
                interval = heapq.heappop(pending)
                yield interval
                since = interval[1]
            if not pending and horizon - since >= timedelta(days=SEARCH_DAYS):
                raise self._unreachable(since)
            day += _DAY

    def _unreachable(self, since: datetime) -> ValueError:
        return ValueError(f"calendar {self.name} has no business hours within {SEARCH_DAYS} days "
                          f"of {since.isoformat()}")


# -- loading --------------------------------------------------------------------------------------

_DATE_REPR = re.compile(r"datetime\.date\((\d+), (\d+), (\d+)\)")


def _field_path(raw: Any, loc: tuple[int | str, ...]) -> str:
    """Dotted field path; a date key shows as 2026-02-14 (pydantic gives its repr)."""
    def part(p: int | str) -> str:
        m = _DATE_REPR.fullmatch(str(p))
        return date(*(int(g) for g in m.groups())).isoformat() if m else str(p)
    return ".".join(part(p) for p in loc) or "(top level)"


def load_calendar(path: Path | None = None) -> BusinessCalendar:
    """Load and validate a calendar file (default: the shipped ``calendars/cn.yaml``), merging
    its ``ical`` file if it names one; errors name the file, the field and the problem."""
    path = path or DEFAULT_CALENDAR
    calendar = load_yaml_model(path, BusinessCalendar, field_path=_field_path)
    if calendar.ical is None:
        return calendar
    ics = path.parent / calendar.ical
    try:
        holidays, workdays = parse_ical(ics.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"{path}: ical: cannot read {ics}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: ical: {ics}: {exc}") from None
    listed = calendar.holidays.keys() | calendar.workdays.keys()  # dates in the YAML win
    merged = calendar.model_dump()
    merged["holidays"] = {**{d: n for d, n in holidays.items() if d not in listed}, **calendar.holidays}
    merged["workdays"] = {**{d: n for d, n in workdays.items() if d not in listed}, **calendar.workdays}
    try:
        return BusinessCalendar.model_validate(merged)
    except ValidationError as exc:
        lines = [f"{path}: ical: {ics}: {_field_path(merged, err['loc'])}: {err['msg']}"
                 for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
