"""The weekly trend: complaints per ISO week, the next weeks forecast with an interval, spikes.

Weeks are ISO weeks (Monday to Sunday) in the report's time zone. The trend holds the last
``trend_weeks`` complete weeks ending on or before the period's end (or today, if sooner: a
week still running would read as a drop). Weeks before the first one with any complaint (the
archive had not started) are shown but neither fitted nor used for spikes.

Forecast (``forecast``): with at least ``ETS_MIN_WEEKS`` non-empty weeks, Holt's linear trend
with an additive damped trend and additive errors (statsmodels ``ETSModel``, error="add",
trend="add", damped_trend=True, fitted by maximum likelihood), and its analytic prediction
interval; otherwise (or if statsmodels is missing or the fit fails) the mean of the weeks with
the normal interval for one new week, mean ± z·s·√(1 + 1/n). Forecasts and bounds are never
below zero.

Spikes (``spikes``): a week is a spike when its count exceeds the median of the other weeks by
more than k times their median absolute deviation (MAD), and by at least ``min_excess``
complaints. The MAD is taken no smaller than a count's own noise, 0.6745·√median (the MAD of a
Poisson count of that median): a few quiet weeks must not make an ordinary one a spike. With
fewer than ``SPIKE_MIN_OTHERS`` other weeks nothing is flagged. Pure, apart from statsmodels.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from services.archive.reports.model import Period, Trend, WeekPoint
from services.common.policy import SpikeRule

ETS_MIN_WEEKS = 8
SPIKE_MIN_OTHERS = 4
POISSON_MAD = 0.6745  # the MAD of a normal variable in standard deviations
_WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Forecast:
    """The next weeks' point forecasts and the bounds of their prediction interval."""

    mean: list[float]
    low: list[float]
    high: list[float]
    method: str  # one sentence, Chinese / English


def trend_weeks(period: Period, *, weeks: int, today: date) -> list[date]:
    """The Mondays of the ``weeks`` complete ISO weeks ending on or before the period's end,
    or before today if that is sooner, oldest first."""
    cutoff = min(period.end, today)
    last = cutoff - timedelta(days=cutoff.weekday()) - _WEEK
    return [last - _WEEK * (weeks - 1 - i) for i in range(weeks)]


def trend(weeks: Sequence[tuple[date, int]], *, horizon: int, interval: float, spike: SpikeRule) -> Trend:
    """Observed weeks (spikes flagged) followed by ``horizon`` forecast weeks."""
    counts = [c for _, c in weeks]
    first = next((i for i, c in enumerate(counts) if c), len(counts))
    series = counts[first:]
    flags = [False] * first + spikes(series, k=spike.k, min_excess=spike.min_excess)
    ahead = forecast(series, horizon=horizon, interval=interval)
    points = [WeekPoint(week, count, spike=flag) for (week, count), flag in zip(weeks, flags, strict=True)]
    last = weeks[-1][0] if weeks else None
    if last is not None:
        points += [WeekPoint(last + _WEEK * (i + 1), None, forecast=m, low=lo, high=hi)
                   for i, (m, lo, hi) in enumerate(zip(ahead.mean, ahead.low, ahead.high, strict=True))]
    return Trend(points=points, method=ahead.method, interval=interval)


def spikes(counts: Sequence[int], *, k: float, min_excess: int) -> list[bool]:
    """For each week: is its count above median + k·MAD of the other weeks (the MAD at least a
    Poisson count's), and by at least min_excess?"""
    flags = []
    for i, count in enumerate(counts):
        others = [*counts[:i], *counts[i + 1:]]
        if len(others) < SPIKE_MIN_OTHERS:
            flags.append(False)
            continue
        median = statistics.median(others)
        mad = max(statistics.median(abs(x - median) for x in others), POISSON_MAD * math.sqrt(median))
        flags.append(count > median + k * mad and count - median >= min_excess)
    return flags


def forecast(series: Sequence[int], *, horizon: int, interval: float) -> Forecast:
    """The next ``horizon`` weeks of a weekly series (see the module's docstring for the method)."""
    values = [float(v) for v in series]
    if sum(1 for v in values if v > 0) >= ETS_MIN_WEEKS:
        try:
            return _ets(values, horizon=horizon, interval=interval)
        except ImportError:
            why = "statsmodels is not installed"
        except (ValueError, ArithmeticError, RuntimeError, IndexError) as exc:
            why = f"the ETS fit failed ({type(exc).__name__})"
        return _mean_forecast(values, horizon=horizon, interval=interval, why=why)
    return _mean_forecast(values, horizon=horizon, interval=interval,
                          why=f"fewer than {ETS_MIN_WEEKS} weeks with complaints")


def _ets(values: list[float], *, horizon: int, interval: float) -> Forecast:
    import pandas as pd
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter: a bad fit is caught below
        model = ETSModel(pd.Series(values), error="add", trend="add", damped_trend=True,
                         initialization_method="estimated")
        fitted = model.fit(disp=False)
        frame = fitted.get_prediction(start=len(values), end=len(values) + horizon - 1) \
            .summary_frame(alpha=1 - interval)
    mean, low, high = (list(map(float, frame[c])) for c in ("mean", "pi_lower", "pi_upper"))
    if not all(math.isfinite(v) for v in (*mean, *low, *high)):
        raise ArithmeticError("non-finite forecast")
    n = len(values)
    return Forecast(
        mean=[max(0.0, v) for v in mean], low=[max(0.0, v) for v in low], high=[max(0.0, v) for v in high],
        method=(f"指数平滑（Holt 阻尼加法趋势，statsmodels ETS(A,Ad,N)，以 {n} 周拟合），"
                f"{interval:.0%} 解析预测区间。 / Exponential smoothing (Holt, additive damped trend, "
                f"statsmodels ETS(A,Ad,N)) fitted on {n} weeks; {interval:.0%} analytic prediction "
                f"interval."))


def _mean_forecast(values: list[float], *, horizon: int, interval: float, why: str) -> Forecast:
    n = len(values)
    mean = statistics.fmean(values) if values else 0.0
    sd = statistics.stdev(values) if n >= 2 else 0.0
    z = statistics.NormalDist().inv_cdf(0.5 + interval / 2)
    half = z * sd * math.sqrt(1 + 1 / n) if n else 0.0
    return Forecast(
        mean=[mean] * horizon, low=[max(0.0, mean - half)] * horizon, high=[mean + half] * horizon,
        method=(f"{n} 周均值 ± z·s·√(1+1/n)（{interval:.0%} 区间；原因：{_zh(why)}）。 / "
                f"Mean of {n} weeks ± z·s·√(1+1/n) ({interval:.0%} interval), because {why}."))


def _zh(why: str) -> str:
    if why.startswith("fewer"):
        return f"有投诉的周少于 {ETS_MIN_WEEKS} 周"
    return "未安装 statsmodels" if "installed" in why else "ETS 拟合失败"
