"""What a complaint analysis report holds: the contract between the figures and the renderers.

``figures`` computes a ``Report`` from archived rows (pure); ``render`` turns one into HTML,
Markdown, JSON or CSV in zh or en; ``GET /v1/reports/kpi`` serves ``as_json``. Every figure
carries the previous period's value beside it (several targets are improvements) and its
target where the policy sets one. Shares and rates are fractions (0.98), never percents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Unit = Literal["count", "share", "days", "hours"]
Dimension = Literal["channel", "code", "department", "handler", "severity", "nature"]


@dataclass(frozen=True)
class Period:
    """A half-open range of local dates [start, end) in the report's time zone."""

    start: date
    end: date  # exclusive
    timezone: str
    label: str  # "2026-11" for a month, "2026-11-01..2026-11-15" otherwise


@dataclass(frozen=True)
class Figure:
    """One headline measure: this period, the previous one, the target."""

    key: str  # timeliness, resolution_rate, handling_days_avg, satisfaction_rate, ...
    unit: Unit
    value: float | None  # None: nothing to measure in the period (no cases, no answers)
    previous: float | None = None
    target: float | None = None
    higher_is_better: bool = True
    count: int | None = None  # how many cases / answers / milestones the value is over

    @property
    def delta(self) -> float | None:
        """This period minus the previous one."""
        return None if self.value is None or self.previous is None else self.value - self.previous

    @property
    def meets_target(self) -> bool | None:
        """Whether the value meets the target (None without a target or a value)."""
        if self.value is None or self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target


@dataclass(frozen=True)
class Share:
    """One value of a dimension: its count and share, now and in the previous period."""

    key: str
    label_zh: str
    label_en: str
    count: int
    share: float
    previous_count: int = 0
    previous_share: float | None = None


@dataclass(frozen=True)
class Breakdown:
    """Volume by one dimension, largest first."""

    dimension: Dimension
    rows: list[Share]


@dataclass(frozen=True)
class MilestoneTimeliness:
    """How many of a milestone's deadlines that fell due in the period were met on time."""

    milestone: str  # acknowledge, respond, dispatch, plan, resolve, feedback, revisit
    person: bool  # met by a person's step (counted in the timeliness figure), not automatically
    due: int  # deadlines that came to an end (met or breached) in the period
    on_time: int
    breached: int
    rate: float | None
    previous_rate: float | None
    target: float | None


@dataclass(frozen=True)
class GroupRow:
    """Assessment figures of one handler, department or other group (考核)."""

    key: str
    label_zh: str
    label_en: str
    cases: int
    resolved: int
    on_time_rate: float | None  # person milestones met on time, of those that came due
    handling_days_avg: float | None  # working days, receipt to resolution
    satisfaction_rate: float | None  # scores at or above the policy's "satisfied"
    answers: int  # satisfaction answers the rate is over
    previous_cases: int = 0


@dataclass(frozen=True)
class FeedbackRow:
    """Praise and suggestions, counted apart from complaints; a suggestion's assessment.

    ``of`` names what the share is of: ``feedback`` (all feedback received), ``suggestions``
    (the suggestions received) or ``assessed`` (the suggestions assessed).
    """

    key: str  # praise, suggestions, assessed, adopted, declined, not_assessed
    of: Literal["feedback", "suggestions", "assessed"]
    count: int
    share: float | None  # None: nothing to share out (no feedback, suggestions, assessments)
    previous_count: int = 0
    previous_share: float | None = None


@dataclass(frozen=True)
class ParetoRow:
    """One cause (taxonomy code) with its share and the cumulative share down the list."""

    code: str
    label_zh: str
    label_en: str
    count: int
    share: float
    cumulative: float
    vital: bool  # among the codes that make up the first 80 %


@dataclass(frozen=True)
class WeekPoint:
    """One ISO week: its count (None for a forecast week) and the forecast with its interval."""

    week_start: date  # Monday
    count: int | None
    forecast: float | None = None
    low: float | None = None
    high: float | None = None
    spike: bool = False


@dataclass(frozen=True)
class Trend:
    """Weekly counts up to the period's end and the next weeks forecast."""

    points: list[WeekPoint]
    method: str  # how the forecast and its interval were made, in a sentence
    interval: float  # the interval's coverage, e.g. 0.95


@dataclass(frozen=True)
class Report:
    """A complaint analysis report over one period (投诉分析报告)."""

    period: Period
    previous: Period
    generated_at: datetime
    policy_version: str
    headline: list[Figure]
    breakdowns: list[Breakdown]
    timeliness: list[MilestoneTimeliness]
    escalations: dict[str, tuple[int, int]]  # level -> (this period, previous period)
    by_department: list[GroupRow]
    by_handler: list[GroupRow]
    pareto: list[ParetoRow]
    trend: Trend
    by: Dimension | None = None  # the --by dimension: its table is ``grouped``
    grouped: list[GroupRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the reader must know (empty period, ...)
    feedback: list[FeedbackRow] = field(default_factory=list)  # praise, suggestions, assessments

    def figure(self, key: str) -> Figure:
        """The headline figure with this key."""
        return next(f for f in self.headline if f.key == key)


def as_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (dates ISO 8601; what GET /v1/reports/kpi answers)."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    data = plain(dataclasses.asdict(report))
    for fig, raw in zip(report.headline, data["headline"], strict=True):
        raw["delta"], raw["meets_target"] = fig.delta, fig.meets_target
    return data  # type: ignore[no-any-return]
