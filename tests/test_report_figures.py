"""The report's pure parts: the period, the policy's report section, the figures from rows,
and working time on the business calendar. No database: rows are built here."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from services.archive.reports import figures
from services.archive.reports.model import Period, Report, Trend
from services.archive.reports.period import PeriodError, parse_period, previous_period, utc_bounds
from services.archive.reports.query import CaseCell, ClockCell, PeriodRows, ReportRows, Resolved
from services.archive.reports.service import WorkingTime, hours_per_day
from services.common.errors import ConfigError
from services.common.policy import DEFAULT_POLICY, ReportPolicy, load_policy
from services.sla_monitor.calendar import ALWAYS_OPEN, load_calendar

TODAY = date(2026, 12, 10)
TZ = "Asia/Shanghai"
POLICY = load_policy()
PERSON = figures.person_milestones(POLICY.sla)

# ---- the period ----------------------------------------------------------------------


@pytest.mark.parametrize(("args", "label", "start", "end", "previous"), [
    ({"month": "2026-11"}, "2026-11", date(2026, 11, 1), date(2026, 12, 1), ("2026-10", date(2026, 10, 1))),
    ({"month": "2026-01"}, "2026-01", date(2026, 1, 1), date(2026, 2, 1), ("2025-12", date(2025, 12, 1))),
    ({"month": "2026-12"}, "2026-12", date(2026, 12, 1), date(2027, 1, 1), ("2026-11", date(2026, 11, 1))),
    ({"start": "2026-11-01", "end": "2026-11-15"}, "2026-11-01..2026-11-15", date(2026, 11, 1),
     date(2026, 11, 16), ("2026-10-17..2026-10-31", date(2026, 10, 17))),
    ({"start": "2026-11-03", "end": "2026-11-03"}, "2026-11-03..2026-11-03", date(2026, 11, 3),
     date(2026, 11, 4), ("2026-11-02..2026-11-02", date(2026, 11, 2))),
    ({"start": "2025-12-11", "end": "2026-12-11"}, "2025-12-11..2026-12-11", date(2025, 12, 11),
     date(2026, 12, 12), ("2024-12-10..2025-12-10", date(2024, 12, 10))),
])
def test_a_period_and_the_one_before_it(args: dict[str, str], label: str, start: date, end: date,
                                        previous: tuple[str, date]) -> None:
    # Given --month or --from/--to; When parsed (today: 10 December 2026)
    period, before = parse_period(**args, timezone=TZ, today=TODAY)
    # Then the period is the local dates asked for (--to inclusive), and the previous one the
    # month before a month, else the same number of days just before
    assert (period.label, period.start, period.end, period.timezone) == (label, start, end, TZ)
    assert (before.label, before.start, before.end) == (*previous, start)
    assert before == previous_period(period)


@pytest.mark.parametrize(("args", "option", "problem"), [
    ({"month": "2026-13"}, "month", "'2026-13' is not a month"),
    ({"month": "26-11"}, "month", "is not a month"),
    ({"month": "2027-01"}, "month", "2027-01 has not begun"),
    ({"month": "2026-11", "start": "2026-11-01"}, "month", "not both"),
    ({}, "month", "give --month"),
    ({"start": "2026-11-01"}, "to", "missing"),
    ({"end": "2026-11-01"}, "from", "missing"),
    ({"start": "2026/11/01", "end": "2026-11-02"}, "from", "is not a date"),
    ({"start": "2026-02-30", "end": "2026-03-02"}, "from", "not a date of the calendar"),
    ({"start": "2026-11-10", "end": "2026-11-01"}, "from", "is after --to"),
    ({"start": "2026-12-11", "end": "2026-12-20"}, "from", "in the future"),
    ({"start": "2025-12-09", "end": "2026-12-10"}, "to", "spans 367 days; at most 366"),
])
def test_a_bad_period_names_the_option_and_the_problem(args: dict[str, str], option: str, problem: str) -> None:
    with pytest.raises(PeriodError) as caught:
        parse_period(**args, timezone=TZ, today=TODAY)
    assert caught.value.option == option and problem in caught.value.problem
    assert str(caught.value).startswith(f"--{option}: ")
    assert isinstance(caught.value, ValueError)


def test_the_period_begins_at_local_midnight() -> None:
    period, _ = parse_period(month="2026-11", timezone=TZ, today=TODAY)
    assert utc_bounds(period) == (datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 30, 16, tzinfo=UTC))


# ---- the policy's report section --------------------------------------------------------


def test_the_shipped_policy_has_the_report_targets() -> None:
    r = POLICY.reports
    assert (r.targets.timeliness, r.targets.resolution_rate, r.targets.handling_days,
            r.targets.satisfaction_rate) == (0.98, 0.95, 3, 0.90)
    assert (r.satisfied_at_least, r.timezone, r.trend_weeks, r.forecast_weeks, r.interval) == (
        4, "Asia/Shanghai", 26, 4, 0.95)
    assert r == ReportPolicy()  # the file says what the defaults are


@pytest.mark.parametrize(("block", "field"), [
    ("{targets: {timeliness: 1.5}}", "reports.targets.timeliness"),
    ("{targets: {handling_days: 0}}", "reports.targets.handling_days"),
    ("{timezone: Mars/Base}", "reports.timezone"),
    ("{satisfied_at_least: 6}", "reports.satisfied_at_least"),
    ("{satisfied_at_least: 2}", "reports.satisfied_at_least (2) must be above"),
    ("{trend_weeks: 4}", "reports.trend_weeks"),
    ("{forecast_weeks: 0}", "reports.forecast_weeks"),
    ("{interval: 1}", "reports.interval"),
    ("{spike: {k: -1}}", "reports.spike.k"),
    ("{vital_share: 0}", "reports.vital_share"),
    ("{colour: blue}", "reports.colour"),
])
def test_every_report_setting_is_validated(tmp_path: Path, block: str, field: str) -> None:
    # Given the shipped policy with one bad value in its reports section
    text = DEFAULT_POLICY.read_text(encoding="utf-8").split("\nreports:")[0] + f"\nreports: {block}\n"
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    # When it is loaded; Then the error names the field
    with pytest.raises(ConfigError, match=field.replace("(", r"\(").replace(")", r"\)")):
        load_policy(path)


def test_a_policy_without_a_reports_section_gets_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DEFAULT_POLICY.read_text(encoding="utf-8").split("\nreports:")[0], encoding="utf-8")
    assert load_policy(path).reports == ReportPolicy()


def test_automatic_milestones_are_those_a_service_meets() -> None:
    assert PERSON == {"acknowledge": False, "respond": True, "dispatch": False, "plan": True,
                      "resolve": True, "feedback": False, "revisit": False}


# ---- figures from rows -----------------------------------------------------------------


def cell(cases: int, **fields: object) -> CaseCell:
    base: dict[str, object] = dict.fromkeys(("channel", "code", "code_name_zh", "code_name_en",
                                             "department", "severity", "handler"))
    return CaseCell(**{"nature": "complaint", **base, **fields, "cases": cases})  # type: ignore[arg-type]


def rows(cells: list[CaseCell], clocks: list[ClockCell] = (), *, days: list[tuple[float, str]] = (),  # type: ignore[assignment]
         surveyed: tuple[int, int] = (0, 0), escalations: dict[str, int] | None = None) -> PeriodRows:
    """Rows of a period; ``days``: (working days, handler) of each resolved complaint, with
    ``received`` 0 and ``resolved`` the days, so that ``days=lambda a, b: b - a`` gives them back."""
    return PeriodRows(cells=cells, clocks=list(clocks), surveyed=surveyed[0], surveyed_answered=surveyed[1],
                      escalations=escalations or {},
                      resolved=Resolved(received=[0.0] * len(days), resolved=[d for d, _ in days],
                                        groups={"handler": [h for _, h in days], "department": [None] * len(days)}))


def tick(milestone: str, due: int, on_time: int, *, cycle: int = 1, handler: str | None = None) -> ClockCell:
    return ClockCell(milestone, cycle, {"handler": handler, "department": None}, due, on_time)


def report(cur: PeriodRows, prev: PeriodRows | None = None, *, today: date = TODAY) -> Report:
    period, before = parse_period(month="2026-11", timezone=TZ, today=TODAY)
    empty = Trend(points=[], method="-", interval=0.95)
    return figures.build(ReportRows(cur, prev or rows([]), []), period=period, previous=before, by=None,
                         policy=POLICY.reports, milestones=PERSON, policy_version="v", days=lambda a, b: b - a,
                         trend=empty, now=datetime(2026, 12, 10, tzinfo=UTC), today=today)


def test_timeliness_counts_only_the_milestones_a_person_must_meet() -> None:
    # Given 10 acknowledgements (automatic, all on time) and 10 responses, 9 on time
    cur = rows([cell(10)], [tick("acknowledge", 10, 10), tick("respond", 10, 9), tick("feedback", 5, 5)])
    # When the figures are made
    r = report(cur)
    # Then the headline is 9 / 10, not (10 + 9 + 5) / 25: the automatic receipt does not inflate it
    assert r.figure("timeliness").value == 0.9 and r.figure("timeliness").count == 10
    assert [(m.milestone, m.person, m.rate) for m in r.timeliness if m.due] == [
        ("acknowledge", False, 1.0), ("respond", True, 0.9), ("feedback", False, 1.0)]


def test_the_resolution_rate_is_over_first_resolve_cycles_that_came_due() -> None:
    cur = rows([cell(4)], [tick("resolve", 3, 2), tick("resolve", 2, 2, cycle=2)])
    assert report(cur).figure("resolution_rate").value == pytest.approx(2 / 3)


@pytest.mark.parametrize(("days", "avg", "median", "p90"), [
    ([1.0], 1.0, 1.0, 1.0),
    ([1.0, 3.0], 2.0, 2.0, 3.0),
    ([0.5, 1, 1, 2, 2, 2, 3, 4, 5, 10], 3.05, 2.0, 5.0),  # p90: the 9th of 10
    ([0.5, 1, 1, 2, 2, 2, 3, 4, 5, 10, 11], 3.7727, 2.0, 10.0),  # the 10th of 11
])
def test_handling_time_average_median_and_nearest_rank_p90(days: list[float], avg: float, median: float,
                                                           p90: float) -> None:
    r = report(rows([cell(len(days))], days=[(d, "h") for d in days]))
    assert r.figure("handling_days_avg").value == pytest.approx(avg, abs=1e-4)
    assert (r.figure("handling_days_median").value, r.figure("handling_days_p90").value) == (median, p90)
    assert r.figure("handling_days_avg").meets_target is (avg <= 3)


def test_satisfaction_response_reopen_repeat_escalation_rates() -> None:
    cur = rows([cell(8, resolved=5, reopened=1, answers=4, satisfied=3, repeats=2, escalated=1),
                cell(2, resolved=1, answers=1, satisfied=0, nature="praise")],
               surveyed=(5, 4))
    r = report(cur)
    assert r.figure("satisfaction_rate").value == 3 / 4  # praise answers not counted
    assert r.figure("response_rate").value == 4 / 5
    assert r.figure("reopen_rate").value == 1 / 5
    assert r.figure("repeat_rate").value == 2 / 8
    assert r.figure("escalation_rate").value == 1 / 8


def test_every_figure_has_the_previous_period_beside_it() -> None:
    r = report(rows([cell(10, answers=10, satisfied=9)]), rows([cell(20, answers=10, satisfied=8)]))
    satisfaction = r.figure("satisfaction_rate")
    assert (satisfaction.value, satisfaction.previous, satisfaction.delta) == (0.9, 0.8, pytest.approx(0.1))
    assert (r.figure("complaints").value, r.figure("complaints").previous) == (10, 20)


def test_a_breakdown_lists_values_seen_only_before() -> None:
    cur = rows([cell(3, channel="phone"), cell(1, channel="email")])
    prev = rows([cell(2, channel="phone"), cell(2, channel="sms")])
    channels = next(b for b in report(cur, prev).breakdowns if b.dimension == "channel").rows
    assert [(s.key, s.count, s.share, s.previous_count, s.previous_share) for s in channels] == [
        ("phone", 3, 0.75, 2, 0.5), ("email", 1, 0.25, 0, 0.0), ("sms", 0, 0.0, 2, 0.5)]
    assert channels[0].label_zh != "phone"  # a name from the report labels


def test_pareto_marks_the_vital_few_down_to_eighty_percent() -> None:
    counts = {"PQ-01": 50, "SF-01": 20, "BL-01": 15, "OT-00": 10, "TF-01": 5}
    r = report(rows([cell(n, code=c) for c, n in counts.items()]))
    assert [(p.code, p.share, p.cumulative, p.vital) for p in r.pareto] == [
        ("PQ-01", 0.5, 0.5, True), ("SF-01", 0.2, 0.7, True), ("BL-01", 0.15, 0.85, True),
        ("OT-00", 0.1, 0.95, False), ("TF-01", 0.05, 1.0, False)]


def test_group_rows_for_assessment() -> None:
    cur = rows([cell(3, handler="a", resolved=2, answers=2, satisfied=1), cell(1, handler=None)],
               [tick("respond", 3, 2, handler="a"), tick("acknowledge", 3, 3, handler="a")],
               days=[(1.0, "a"), (2.0, "a")])
    prev = rows([cell(5, handler="b")])
    got = {g.key: g for g in report(cur, prev).by_handler}
    assert list(got) == ["a", "unknown", "b"]
    a = got["a"]
    assert (a.cases, a.resolved, a.on_time_rate, a.handling_days_avg, a.satisfaction_rate, a.answers) == (
        3, 2, 2 / 3, 1.5, 0.5, 2)
    assert (got["b"].cases, got["b"].previous_cases, got["b"].on_time_rate) == (0, 5, None)


def test_escalations_list_every_level_one_can_move_to() -> None:
    r = report(rows([cell(1)], escalations={"L3": 2}), rows([cell(1)], escalations={"L2": 1}))
    assert r.escalations == {"L2": (0, 1), "L3": (2, 0)}


@pytest.mark.parametrize(("cur", "prev", "today", "expected"), [
    (0, 0, TODAY, ["No complaints were received in 2026-11"]),
    (3, 0, TODAY, ["No complaints were received in the previous period (2026-10)"]),
    (3, 3, date(2026, 11, 20), ["The period is not over: figures as of 2026-11-20"]),
    (3, 3, TODAY, []),
])
def test_notes_say_what_the_reader_must_know(cur: int, prev: int, today: date, expected: list[str]) -> None:
    notes = report(rows([cell(cur)] if cur else []), rows([cell(prev)] if prev else []), today=today).notes
    assert len(notes) == len(expected)
    for note, text in zip(notes, expected, strict=True):
        assert text in note and " / " in note  # Chinese / English


def test_an_empty_period_has_no_rates() -> None:
    r = report(rows([]))
    assert r.figure("complaints").value == 0
    assert all(f.value is None for f in r.headline if f.unit != "count")
    assert r.pareto == [] and r.by_handler == []


# ---- working time ----------------------------------------------------------------------


def test_working_time_equals_the_calendar_elapsed() -> None:
    # Given the shipped calendar (holidays, make-up days) and random pairs of instants in 2026
    calendar = load_calendar()
    rng = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    pairs = []
    for _ in range(300):
        a = base + timedelta(minutes=rng.randrange(0, 365 * 24 * 60))
        pairs.append((a, a + timedelta(minutes=rng.randrange(0, 20 * 24 * 60))))
    working = WorkingTime(calendar, [t.timestamp() for p in pairs for t in p])
    # When working time is counted by prefix sums; Then it equals the calendar's own count
    for a, b in pairs:
        assert working.elapsed(a.timestamp(), b.timestamp()) == pytest.approx(
            calendar.elapsed(a, b).total_seconds(), abs=1e-3)
        assert working.days(a.timestamp(), b.timestamp()) == pytest.approx(
            calendar.elapsed(a, b).total_seconds() / 3600 / 8, abs=1e-6)
    assert working.elapsed(pairs[0][1].timestamp(), pairs[0][0].timestamp()) == 0.0


@pytest.mark.parametrize(("path", "hours"), [(None, 8.0), (ALWAYS_OPEN, 24.0)])
def test_a_working_day_is_the_calendars_usual_day(path: Path | None, hours: float) -> None:
    assert hours_per_day(load_calendar(path)) == hours


def test_working_time_with_nothing_to_count() -> None:
    assert WorkingTime(load_calendar(), []).elapsed(0.0, 100.0) == 0.0


def test_the_period_type_is_the_contracts() -> None:
    period, _ = parse_period(month="2026-11", timezone=TZ, today=TODAY)
    assert isinstance(period, Period)
