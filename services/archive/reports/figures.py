"""The report's figures: pure functions from the archive's rows (``query``) to a ``model.Report``.

Whose figures: the complaints (nature ``complaint``) received in the period, as the archive
holds them when the report is made; the previous period's complaints give every ``previous``.
Praise and suggestions appear in the nature breakdown and are counted apart (``feedback``,
with the suggestions' assessment). Shares and rates are fractions;
a rate with nothing to measure is None. docs/reports.md states every rule; each function's
docstring states its own. No I/O, no clock: handling time comes through ``days``.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Literal

from schemas.events import Level
from services.archive.reports import labels
from services.archive.reports.model import (
    Breakdown,
    Dimension,
    FeedbackRow,
    Figure,
    GroupRow,
    MilestoneTimeliness,
    ParetoRow,
    Period,
    Report,
    Share,
    Trend,
)
from services.archive.reports.query import COMPLAINT, CaseCell, ClockCell, PeriodRows, ReportRows
from services.common.policy import ReportPolicy, SlaPolicy

UNKNOWN = "unknown"  # the key of a missing value (a complaint not routed yet, no handler booked)
AUTOMATIC_SIGNALS = ("routed", "assigned")  # and every notified:<kind>: met by a service, not a person
BREAKDOWNS: tuple[Dimension, ...] = ("channel", "code", "department", "severity", "nature")
Days = Callable[[float, float], float]  # working days between two instants (epoch seconds)


def person_milestones(sla: SlaPolicy) -> dict[str, bool]:
    """Each milestone of the policy, in its order: True when a person must meet it.

    A milestone is automatic when any of its ``stop_on`` signals is one a service emits: a
    notification sent (``notified:*``) or a routing decision (``routed``, ``assigned``).
    """
    return {m.value: not any(s.startswith("notified:") or s in AUTOMATIC_SIGNALS for s in p.stop_on)
            for m, p in sla.milestones.items()}


def handled(rows: PeriodRows, days: Days) -> list[float]:
    """Working days from receipt to (last) resolution of each resolved complaint (in the order
    of ``rows.resolved``)."""
    r = rows.resolved
    return [days(a, b) for a, b in zip(r.received, r.resolved, strict=True)]


def build(rows: ReportRows, *, period: Period, previous: Period, by: Dimension | None,
          policy: ReportPolicy, milestones: Mapping[str, bool], policy_version: str, days: Days,
          trend: Trend, now: datetime, today: date) -> Report:
    """The whole report (``trend``: see ``forecast.trend``)."""
    cur, prev = rows.current, rows.previous
    handled_cur, handled_prev = handled(cur, days), handled(prev, days)
    return Report(
        period=period, previous=previous, generated_at=now, policy_version=policy_version,
        headline=headline(cur, prev, handled_cur, handled_prev, policy=policy, milestones=milestones),
        breakdowns=[breakdown(d, cur, prev) for d in BREAKDOWNS],
        timeliness=timeliness(cur, prev, milestones=milestones, target=policy.targets.timeliness),
        escalations=escalations(cur, prev),
        by_department=groups("department", cur, prev, handled_cur, milestones=milestones),
        by_handler=groups("handler", cur, prev, handled_cur, milestones=milestones),
        pareto=pareto(cur, vital_share=policy.vital_share),
        trend=trend, by=by,
        grouped=groups(by, cur, prev, handled_cur, milestones=milestones) if by else [],
        notes=notes(cur, prev, period=period, previous=previous, milestones=milestones, today=today),
        feedback=feedback(cur, prev))


# ---- headline -------------------------------------------------------------------------


def headline(cur: PeriodRows, prev: PeriodRows, handled_cur: list[float], handled_prev: list[float], *,
             policy: ReportPolicy, milestones: Mapping[str, bool]) -> list[Figure]:
    """The measures operators are judged by (REQUIREMENTS §9), this period beside the previous.

    - complaints: complaints received; open_cases: of them, not resolved or closed yet.
    - timeliness: deadlines of person milestones (every cycle) met on time / those that came
      to an end (met or breached); automatic milestones are not counted.
    - resolution_rate: complaints whose first resolve deadline was met on time / complaints
      whose first resolve deadline came to an end (met or breached).
    - handling_days_avg / _median / _p90: working days from receipt to (last) resolution of
      the resolved complaints; p90 is the nearest rank (the ceil(0.9 n)-th smallest).
    - response_hours_avg: hours (calendar) from receipt to the first handler response.
    - satisfaction_rate: answers >= satisfied_at_least / answers (the latest answer per case).
    - response_rate: complaints whose revisit was sent and that answered / revisits sent.
    - reopen_rate: resolved complaints reopened at least once / resolved complaints.
    - repeat_rate: complaints linked to an earlier one (repeat_of) / complaints.
    - escalation_rate: complaints escalated at least once / complaints.
    """
    t = policy.targets
    now, was = _totals(cur), _totals(prev)
    on_time, due = _clock_rate(cur.clocks, milestones=milestones)
    on_time_prev, due_prev = _clock_rate(prev.clocks, milestones=milestones)
    res, res_due = _resolve_rate(cur.clocks)
    res_prev, res_due_prev = _resolve_rate(prev.clocks)
    hd, hd_prev = sorted(handled_cur), sorted(handled_prev)

    def share(key: str, n: int, d: int, n_prev: int, d_prev: int, target: float | None = None,
              higher: bool = True) -> Figure:
        return Figure(key, "share", _rate(n, d), _rate(n_prev, d_prev), target, higher, d)

    return [
        Figure("complaints", "count", now["cases"], was["cases"], None, False, now["cases"]),
        Figure("open_cases", "count", now["open"], was["open"], None, False, now["cases"]),
        share("timeliness", on_time, due, on_time_prev, due_prev, t.timeliness),
        share("resolution_rate", res, res_due, res_prev, res_due_prev, t.resolution_rate),
        Figure("handling_days_avg", "days", _mean(hd), _mean(hd_prev), t.handling_days, False, len(hd)),
        Figure("handling_days_median", "days", _median(hd), _median(hd_prev), None, False, len(hd)),
        Figure("handling_days_p90", "days", _p90(hd), _p90(hd_prev), None, False, len(hd)),
        Figure("response_hours_avg", "hours", _hours(cur), _hours(prev), None, False, now["responded"]),
        share("satisfaction_rate", now["satisfied"], now["answers"], was["satisfied"], was["answers"],
              t.satisfaction_rate),
        share("response_rate", cur.surveyed_answered, cur.surveyed, prev.surveyed_answered, prev.surveyed),
        share("reopen_rate", now["reopened"], now["resolved"], was["reopened"], was["resolved"],
              higher=False),
        share("repeat_rate", now["repeats"], now["cases"], was["repeats"], was["cases"], higher=False),
        share("escalation_rate", now["escalated"], now["cases"], was["escalated"], was["cases"],
              higher=False),
    ]


_SUMS = ("cases", "repeats", "resolved", "reopened", "answers", "satisfied", "escalated", "open",
         "responded")


def _totals(rows: PeriodRows) -> dict[str, int]:
    sums = dict.fromkeys(_SUMS, 0)
    for cell in _complaints(rows.cells):
        for name in _SUMS:
            sums[name] += getattr(cell, name)
    return sums


def _hours(rows: PeriodRows) -> float | None:
    """Average hours from receipt to first response over the complaints responded to."""
    cells = list(_complaints(rows.cells))
    n = sum(c.responded for c in cells)
    return round(sum(c.response_seconds for c in cells) / n / 3600, 4) if n else None


def _clock_rate(clocks: Iterable[ClockCell], *, milestones: Mapping[str, bool]) -> tuple[int, int]:
    person = [c for c in clocks if milestones.get(c.milestone, False)]
    return sum(c.on_time for c in person), sum(c.due for c in person)


def _resolve_rate(clocks: Iterable[ClockCell]) -> tuple[int, int]:
    first = [c for c in clocks if c.milestone == "resolve" and c.cycle == 1]
    return sum(c.on_time for c in first), sum(c.due for c in first)


# ---- tables -----------------------------------------------------------------------------


PRAISE, SUGGESTION = "praise", "suggestion"


def _feedback_counts(rows: PeriodRows) -> dict[str, int]:
    all_ = sum(c.cases for c in rows.cells)
    praise = sum(c.cases for c in rows.cells if c.nature == PRAISE)
    ideas = [c for c in rows.cells if c.nature == SUGGESTION]
    adopted, declined = sum(c.adopted for c in ideas), sum(c.declined for c in ideas)
    suggestions = sum(c.cases for c in ideas)
    return {"feedback": all_, "praise": praise, "suggestions": suggestions,
            "assessed": adopted + declined, "adopted": adopted, "declined": declined,
            "not_assessed": suggestions - adopted - declined}


FEEDBACK_ROWS: tuple[tuple[str, Literal["feedback", "suggestions", "assessed"]], ...] = (
    ("praise", "feedback"), ("suggestions", "feedback"), ("assessed", "suggestions"),
    ("adopted", "assessed"), ("declined", "assessed"), ("not_assessed", "suggestions"))


def feedback(cur: PeriodRows, prev: PeriodRows) -> list[FeedbackRow]:
    """Praise and suggestions received in the period, counted apart from complaints, and the
    suggestions' assessment (the case's latest): assessed (adopted or declined) and not yet
    assessed, as shares of the suggestions; adopted and declined as shares of those assessed.
    Praise and suggestions are shares of all feedback received."""
    now, was = _feedback_counts(cur), _feedback_counts(prev)
    return [FeedbackRow(key, of, count=now[key], share=_rate(now[key], now[of]),
                        previous_count=was[key], previous_share=_rate(was[key], was[of]))
            for key, of in FEEDBACK_ROWS]


def breakdown(dimension: Dimension, cur: PeriodRows, prev: PeriodRows) -> Breakdown:
    """Complaints by one dimension (nature: all feedback), largest first; a value seen only in
    the previous period is listed with 0. Shares are of the period's total."""
    pick = (lambda cells: cells) if dimension == "nature" else _complaints
    now, was = _count_by(dimension, pick(cur.cells)), _count_by(dimension, pick(prev.cells))
    total, total_prev = sum(now.values()), sum(was.values())
    names = _names(dimension, [*cur.cells, *prev.cells])
    rows = [Share(key, *names(key), count=now.get(key, 0), share=_rate(now.get(key, 0), total) or 0.0,
                  previous_count=was.get(key, 0), previous_share=_rate(was.get(key, 0), total_prev))
            for key in _ordered(now, was)]
    return Breakdown(dimension, rows)


def timeliness(cur: PeriodRows, prev: PeriodRows, *, milestones: Mapping[str, bool],
               target: float) -> list[MilestoneTimeliness]:
    """Per milestone (policy order, then any other the archive holds): its deadlines of every
    cycle that came to an end, met on time, and missed (breached, or met late)."""
    names = [*milestones, *sorted({c.milestone for c in [*cur.clocks, *prev.clocks]} - set(milestones))]
    out = []
    for name in names:
        due = sum(c.due for c in cur.clocks if c.milestone == name)
        on_time = sum(c.on_time for c in cur.clocks if c.milestone == name)
        due_prev = sum(c.due for c in prev.clocks if c.milestone == name)
        on_time_prev = sum(c.on_time for c in prev.clocks if c.milestone == name)
        out.append(MilestoneTimeliness(name, milestones.get(name, False), due, on_time, due - on_time,
                                       _rate(on_time, due), _rate(on_time_prev, due_prev), target))
    return out


def escalations(cur: PeriodRows, prev: PeriodRows) -> dict[str, tuple[int, int]]:
    """Escalated routing decisions of the period's complaints by the level they moved to
    (every level one can move to, L2 and L3, always listed)."""
    levels = [lv.value for lv in Level][1:]
    levels += sorted((cur.escalations.keys() | prev.escalations.keys()) - set(levels))
    return {lv: (cur.escalations.get(lv, 0), prev.escalations.get(lv, 0)) for lv in levels}


def groups(dimension: Dimension, cur: PeriodRows, prev: PeriodRows, handled_cur: list[float], *,
           milestones: Mapping[str, bool]) -> list[GroupRow]:
    """Assessment rows (考核) per handler, department or other group, by the case's current
    value: complaints received, resolved, person milestones on time, average handling time,
    satisfaction; largest first."""
    cells, cells_prev = list(_complaints(cur.cells)), list(_complaints(prev.cells))
    now, was = _count_by(dimension, cells), _count_by(dimension, cells_prev)
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for cell in cells:
        for name in ("resolved", "answers", "satisfied"):
            sums[_key(cell.key(dimension))][name] += getattr(cell, name)
    for clock in cur.clocks:
        if milestones.get(clock.milestone, False):
            key = _key(clock.groups.get(dimension))
            sums[key]["due"] += clock.due
            sums[key]["on_time"] += clock.on_time
    spent: dict[str, list[float]] = defaultdict(list)
    for days, value in zip(handled_cur, cur.resolved.groups.get(dimension, []), strict=False):
        spent[_key(value)].append(days)
    names = _names(dimension, [*cur.cells, *prev.cells])
    return [GroupRow(key, *names(key), cases=now.get(key, 0), resolved=sums[key]["resolved"],
                     on_time_rate=_rate(sums[key]["on_time"], sums[key]["due"]),
                     handling_days_avg=_mean(spent[key]),
                     satisfaction_rate=_rate(sums[key]["satisfied"], sums[key]["answers"]),
                     answers=sums[key]["answers"], previous_cases=was.get(key, 0))
            for key in _ordered(now, was)]


def pareto(cur: PeriodRows, *, vital_share: float) -> list[ParetoRow]:
    """Causes (taxonomy codes) of the period's complaints, most frequent first, with the
    cumulative share; the vital few are the codes down to the one that reaches ``vital_share``."""
    counts = _count_by("code", _complaints(cur.cells))
    total = sum(counts.values())
    names = _names("code", cur.cells)
    rows, before = [], 0
    for key in _ordered(counts, {}):
        rows.append(ParetoRow(key, *names(key), count=counts[key], share=counts[key] / total,
                              cumulative=(before + counts[key]) / total, vital=before / total < vital_share))
        before += counts[key]
    return rows


def notes(cur: PeriodRows, prev: PeriodRows, *, period: Period, previous: Period,
          milestones: Mapping[str, bool], today: date) -> list[str]:
    """What the reader must know, in Chinese and English: an empty period, nothing to compare
    with, a period not over, complaints still open, milestones the policy no longer has."""
    now, was = _totals(cur), _totals(prev)
    out = []
    if not now["cases"]:
        out.append(f"本期（{period.label}）没有收到投诉，各项比率无数据。 / "
                   f"No complaints were received in {period.label}: the rates have nothing to measure.")
    elif not was["cases"]:
        out.append(f"上期（{previous.label}）没有投诉，无从对比。 / "
                   f"No complaints were received in the previous period ({previous.label}): "
                   f"nothing to compare with.")
    if today < period.end:
        out.append(f"本期尚未结束，数字截至 {today.isoformat()}。 / "
                   f"The period is not over: figures as of {today.isoformat()}.")
    if now["open"]:
        out.append(f"本期投诉中仍有 {now['open']:,} 件未结，解决率与处理时长还会变化。 / "
                   f"{now['open']:,} complaints of the period are still open: the resolution rate "
                   f"and handling times will change as they are resolved.")
    unknown = sorted({c.milestone for c in [*cur.clocks, *prev.clocks]} - set(milestones))
    if unknown:
        out.append(f"环节 {', '.join(unknown)} 不在当前策略中，按自动环节列出。 / "
                   f"Milestones {', '.join(unknown)} are not in the current policy: listed as automatic.")
    return out


# ---- helpers ----------------------------------------------------------------------------


def _complaints(cells: Iterable[CaseCell]) -> Iterable[CaseCell]:
    return (c for c in cells if c.nature == COMPLAINT)


def _key(value: str | None) -> str:
    return value if value else UNKNOWN


def _count_by(dimension: str, cells: Iterable[CaseCell]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for cell in cells:
        counts[_key(cell.key(dimension))] += cell.cases
    return dict(counts)


def _ordered(now: Mapping[str, int], was: Mapping[str, int]) -> list[str]:
    """Keys of either period: this period's count, then the previous one's, descending; then key."""
    return sorted(now.keys() | was.keys(), key=lambda k: (-now.get(k, 0), -was.get(k, 0), k))


def _names(dimension: str, cells: Iterable[CaseCell]) -> Callable[[str], tuple[str, str]]:
    """(label_zh, label_en) of a key: a code's names from the archive, else the report labels."""
    codes: dict[str, tuple[str, str]] = {}
    if dimension == "code":
        for c in cells:
            if c.code and c.code not in codes and (c.code_name_zh or c.code_name_en):
                codes[c.code] = (c.code_name_zh or c.code_name_en or c.code,
                                 c.code_name_en or c.code_name_zh or c.code)

    def name(key: str) -> tuple[str, str]:
        if key == UNKNOWN:
            return "未知", "unknown"
        if key in codes:
            return codes[key]
        return labels.name("zh", dimension, key), labels.name("en", dimension, key)

    return name


def _rate(n: float, d: float) -> float | None:
    return n / d if d else None


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _p90(ordered: list[float]) -> float | None:
    return round(ordered[math.ceil(0.9 * len(ordered)) - 1], 4) if ordered else None
