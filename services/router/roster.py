"""The handler roster: who handles which department at which level, and when on duty.

The shipped file is ``roster.yaml`` next to this module. A shift is a list of spans
like ``mon-fri 09:00-18:00``, ``sat,sun 10:00-16:00`` or ``mon-sun 20:00-08:00`` (a span
whose end is not after its start runs past midnight into the next day), read in the
roster's time zone. Handler ids are staff ids, never names (they appear in events,
logs and metrics).
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.events import Level
from services.common.errors import ConfigError
from services.common.policy import TimeZoneName, load_yaml_model

DEFAULT_ROSTER = Path(__file__).with_name("roster.yaml")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*([a-z,\-]+)\s+(\d{2}):(\d{2})-(\d{2}):(\d{2})\s*$")
HANDLER_ID = r"^[a-z0-9][a-z0-9._-]{0,99}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _days(spec: str) -> frozenset[int]:
    out: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"unknown day in {spec!r} (use mon..sun, ranges like mon-fri)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


class Span(_Frozen):
    """Days of the week and a time range in minutes since midnight (end may wrap)."""

    days: frozenset[int]
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Span:
        m = _SPAN.match(text)
        if not m:
            raise ValueError(f"not a shift span: {text!r} (use e.g. 'mon-fri 09:00-18:00')")
        h1, m1, h2, m2 = (int(g) for g in m.groups()[1:])
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"not a time of day in {text!r}")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise ValueError(f"empty span {text!r}")
        return cls(days=_days(m.group(1)), start=start, end=end)

    def covers(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # overnight: the evening of a listed day, or the morning after it
        return ((weekday in self.days and minute >= self.start)
                or ((weekday - 1) % 7 in self.days and minute < self.end))


class Handler(_Frozen):
    id: str = Field(pattern=HANDLER_ID, description="Staff id (never a name).")
    level: Level
    shift: str = Field(min_length=1, description="A shift named in the roster's shifts.")
    capacity: int = Field(default=0, ge=0, description="Most open cases at once; 0: no limit.")
    on_duty: bool = Field(default=True, description="false: on leave, never booked.")


class Roster(_Frozen):
    version: str = Field(min_length=1)
    timezone: TimeZoneName
    shifts: dict[str, list[str]] = Field(min_length=1)
    departments: dict[str, list[Handler]] = Field(min_length=1)

    @field_validator("shifts")
    @classmethod
    def _valid_spans(cls, shifts: dict[str, list[str]]) -> dict[str, list[str]]:
        for spans in shifts.values():
            if not spans:
                raise ValueError("a shift needs at least one span")
            for span in spans:
                Span.parse(span)
        return shifts

    @model_validator(mode="after")
    def _consistent(self) -> Roster:
        seen: dict[str, str] = {}
        for dept, handlers in self.departments.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]*", dept):
                raise ValueError(f"department name {dept!r}: lower-case letters, digits, _ or -")
            for h in handlers:
                if h.shift not in self.shifts:
                    raise ValueError(f"departments.{dept}: handler {h.id} names unknown shift {h.shift!r}")
                if h.id in seen:
                    raise ValueError(f"handler {h.id} is listed in {seen[h.id]} and {dept}")
                seen[h.id] = dept
        return self

    @cached_property
    def _spans(self) -> dict[str, list[Span]]:
        return {name: [Span.parse(s) for s in spans] for name, spans in self.shifts.items()}

    def on_duty(self, department: str, level: Level, at: datetime) -> list[Handler]:
        """Handlers of ``department`` at ``level`` on duty at ``at``, in roster order."""
        local = at.astimezone(ZoneInfo(self.timezone))
        weekday, minute = local.weekday(), local.hour * 60 + local.minute
        return [h for h in self.departments.get(department, [])
                if h.level is level and h.on_duty
                and any(s.covers(weekday, minute) for s in self._spans[h.shift])]

    def gaps(self, departments: set[str]) -> list[str]:
        """Departments that lack a handler at some level (each one a readable problem)."""
        problems = []
        for dept in sorted(departments):
            levels = {h.level for h in self.departments.get(dept, [])}
            missing = [lv.value for lv in Level if lv not in levels]
            if dept not in self.departments:
                problems.append(f"departments.{dept}: missing (a taxonomy code or the review "
                                f"queue sends cases there)")
            elif missing:
                problems.append(f"departments.{dept}: no handler at {', '.join(missing)}")
        return problems


def load_roster(path: Path | None = None, *, departments: set[str] | None = None) -> Roster:
    """Load and validate a roster; with ``departments``, each must be staffed at every level."""
    path = path or DEFAULT_ROSTER
    roster = load_yaml_model(path, Roster)
    if departments and (problems := roster.gaps(departments)):
        raise ConfigError("\n".join(f"{path}: {p}" for p in problems))
    return roster
