"""The weekly trend on synthetic series: which weeks, the forecast and its interval, spikes."""

from __future__ import annotations

import math
import random
import statistics
import sys
from datetime import date, timedelta

import pytest

from services.archive.reports.forecast import ETS_MIN_WEEKS, forecast, spikes, trend, trend_weeks
from services.archive.reports.model import Period
from services.common.policy import SpikeRule

RULE = SpikeRule()  # k 5, min_excess 5


def noisy(level: float, n: int, *, slope: float = 0.0, sd: float = 3.0, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return [max(0, round(level + slope * i + rng.gauss(0, sd))) for i in range(n)]


def mondays(n: int, last: date = date(2026, 11, 23)) -> list[date]:
    return [last - timedelta(weeks=n - 1 - i) for i in range(n)]


@pytest.mark.parametrize(("start", "end", "today", "last"), [
    # a month ending on a Monday: the week before is the last complete one
    (date(2026, 11, 1), date(2026, 12, 1), date(2026, 12, 10), date(2026, 11, 23)),
    # a range ending on a Sunday: its own week is complete
    (date(2026, 11, 1), date(2026, 11, 30), date(2026, 12, 10), date(2026, 11, 23)),
    # the period is not over: the last week that ended before today
    (date(2026, 12, 1), date(2027, 1, 1), date(2026, 12, 10), date(2026, 11, 30)),
    (date(2026, 12, 1), date(2027, 1, 1), date(2026, 12, 14), date(2026, 12, 7)),
])
def test_the_trend_holds_complete_weeks_up_to_the_periods_end(start: date, end: date, today: date,
                                                              last: date) -> None:
    weeks = trend_weeks(Period(start, end, "Asia/Shanghai", "p"), weeks=26, today=today)
    assert len(weeks) == 26 and weeks[-1] == last
    assert all(w.weekday() == 0 for w in weeks)
    assert all(b - a == timedelta(weeks=1) for a, b in zip(weeks, weeks[1:], strict=False))


def test_a_flat_series_forecasts_flat_inside_its_interval() -> None:
    # Given 26 weeks around 100 complaints
    series = noisy(100, 26)
    # When forecast 4 weeks ahead at 95 %
    ahead = forecast(series, horizon=4, interval=0.95)
    # Then ETS is used, the forecast stays near the level and inside its interval
    assert "ETS" in ahead.method
    assert all(abs(m - statistics.fmean(series)) < 6 for m in ahead.mean)
    assert max(ahead.mean) - min(ahead.mean) < 3
    assert all(lo < m < hi for lo, m, hi in zip(ahead.low, ahead.mean, ahead.high, strict=True))
    assert all(hi - lo < 30 for lo, hi in zip(ahead.low, ahead.high, strict=True))


def test_a_clear_trend_is_followed() -> None:
    # Given 26 weeks rising by 5 a week from 50
    series = noisy(50, 26, slope=5, sd=2)
    ahead = forecast(series, horizon=4, interval=0.95)
    # Then the forecast keeps rising from the last weeks, damped but well above a flat mean
    assert ahead.mean == sorted(ahead.mean)
    assert ahead.mean[0] > series[-1] - 5 and ahead.mean[3] > ahead.mean[0] + 5
    assert ahead.mean[0] == pytest.approx(50 + 5 * 26, abs=8)
    assert all(lo < m < hi for lo, m, hi in zip(ahead.low, ahead.mean, ahead.high, strict=True))


def test_intervals_widen_further_ahead() -> None:
    ahead = forecast(noisy(100, 26, sd=8), horizon=4, interval=0.95)
    widths = [hi - lo for lo, hi in zip(ahead.low, ahead.high, strict=True)]
    assert widths == sorted(widths)


def test_an_injected_spike_is_flagged_and_an_ordinary_week_is_not() -> None:
    # Given weeks around 100 (Poisson-like noise) and one week of 180
    series = noisy(100, 20, sd=10)
    series[12] = 180
    flags = spikes(series, k=RULE.k, min_excess=RULE.min_excess)
    # Then only that week is a spike
    assert flags == [i == 12 for i in range(20)]


@pytest.mark.parametrize(("series", "flagged"), [
    ([10, 10, 10, 10, 10, 16], False),  # MAD 0: taken as a count's own noise, 0.6745·√10
    ([10, 10, 10, 10, 10, 25], True),
    ([0, 0, 0, 0, 0, 6], True),
    ([1, 2, 3, 40], False),             # too few other weeks to say what is usual
    ([0, 0, 0, 0, 0, 4], False),        # under min_excess
])
def test_spike_edges(series: list[int], flagged: bool) -> None:
    assert spikes(series, k=RULE.k, min_excess=RULE.min_excess)[-1] is flagged


def test_fewer_than_eight_weeks_use_the_mean_and_its_normal_interval() -> None:
    # Given 6 weeks with complaints
    series = [10, 12, 9, 11, 14, 10]
    ahead = forecast(series, horizon=4, interval=0.95)
    # Then the fallback: mean ± z·s·√(1 + 1/n), worked out here by hand
    mean, sd, n = 11.0, statistics.stdev(series), 6
    half = 1.959964 * sd * math.sqrt(1 + 1 / n)
    assert ahead.mean == [mean] * 4
    assert ahead.low == pytest.approx([mean - half] * 4, abs=1e-4)
    assert ahead.high == pytest.approx([mean + half] * 4, abs=1e-4)
    assert f"fewer than {ETS_MIN_WEEKS} weeks" in ahead.method


def test_empty_weeks_do_not_count_towards_the_eight() -> None:
    series = [0, 5, 0, 6, 0, 5, 0, 7, 0, 6, 0, 5, 0, 6]  # 7 weeks with complaints of 14
    assert "fewer than" in forecast(series, horizon=4, interval=0.95).method


def test_without_statsmodels_the_fallback_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.exponential_smoothing.ets", None)
    ahead = forecast(noisy(100, 26), horizon=4, interval=0.95)
    assert "statsmodels is not installed" in ahead.method and len(ahead.mean) == 4


def test_no_complaints_at_all_forecast_zero() -> None:
    ahead = forecast([], horizon=4, interval=0.95)
    assert (ahead.mean, ahead.low, ahead.high) == ([0.0] * 4, [0.0] * 4, [0.0] * 4)


def test_a_forecast_is_never_below_zero() -> None:
    ahead = forecast([30, 25, 22, 18, 15, 12, 9, 7, 5, 3, 2, 1], horizon=4, interval=0.95)
    assert min(ahead.low) >= 0 and min(ahead.mean) >= 0


def test_the_trend_joins_weeks_spikes_and_forecast() -> None:
    # Given 26 weeks of which the first 10 are before the archive began, and a spike
    counts = [0] * 10 + noisy(60, 16, sd=3)
    counts[20] = 150
    weeks = list(zip(mondays(26), counts, strict=True))
    # When the trend is made
    t = trend(weeks, horizon=4, interval=0.9, spike=RULE)
    # Then the 26 weeks come first with their counts, the spike flagged (not the empty start),
    # then 4 forecast weeks on the following Mondays
    observed, ahead = t.points[:26], t.points[26:]
    assert [p.count for p in observed] == counts and [p.spike for p in observed] == [i == 20 for i in range(26)]
    assert [p.week_start for p in ahead] == [date(2026, 11, 30) + timedelta(weeks=i) for i in range(4)]
    assert all(p.count is None and p.forecast is not None and p.low is not None for p in ahead)
    assert t.interval == 0.9 and "16 weeks" in t.method  # fitted from the first week with complaints
