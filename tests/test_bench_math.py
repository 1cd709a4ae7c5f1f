"""The pure figures of `complaints bench`: percentiles, rates, ratios, the report. No broker."""

from __future__ import annotations

import math

import pytest

from services.bench import Figures, format_report, latencies_ms, percentile, rate, ratio


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0], 100, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # between the two middle ranks
        ([4.0, 1.0, 3.0, 2.0], 50, 2.5),  # order of input does not matter
        ([10.0, 20.0], 95, 19.5),
        ([float(v) for v in range(1, 101)], 95, 95.05),
        ([float(v) for v in range(1, 101)], 99, 99.01),
        ([7.0, 7.0, 7.0], 95, 7.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


@pytest.mark.parametrize("q", [-1, 100.5, 1000])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="0..100"):
        percentile([1.0], q)


@pytest.mark.parametrize(
    ("count", "seconds", "expected"),
    [(2000, 4.0, 500.0), (1, 0.5, 2.0), (0, 3.0, 0.0), (10, 0.0, math.nan), (10, -1.0, math.nan)],
)
def test_rate(count: int, seconds: float, expected: float) -> None:
    assert rate(count, seconds) == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [(50.0, 1000.0, 0.05), (1000.0, 1000.0, 1.0), (0.0, 5.0, 0.0), (5.0, 0.0, math.nan),
     (5.0, math.nan, math.nan), (math.nan, 5.0, math.nan)],
)
def test_ratio(part: float, whole: float, expected: float) -> None:
    assert ratio(part, whole) == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("sent", "seen", "expected"),
    [
        ({"a": 1.0, "b": 2.0}, {"a": 1.25, "b": 2.5}, [250.0, 500.0]),
        ({"a": 1.0}, {"a": 1.0}, [0.0]),
        ({"a": 1.0}, {"a": 2.0, "other": 9.0}, [1000.0]),  # seen but never sent: ignored
        ({"a": 1.0, "b": 2.0}, {}, []),  # sent but not seen yet
    ],
)
def test_latencies_ms(sent: dict[str, float], seen: dict[str, float],
                      expected: list[float]) -> None:
    assert latencies_ms(sent, seen) == pytest.approx(expected)


def _figures(**overrides: object) -> Figures:
    fields: dict[str, object] = dict(
        count=2000, run_id="abc12345", partitions=6, base_produce=10_000.0, base_consume=20_000.0,
        inbound_produce=9_000.0, end_to_end=500.0, seconds=4.0,
        routed_ms=[10.0, 20.0, 30.0], acked_ms=[40.0, 50.0, 60.0],
    )
    fields.update(overrides)
    return Figures(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "N=2000 (run id abc12345; order: broker baseline, then pipeline)"),
        ({}, "1 topic, 6 partitions"),
        ({}, "produce   10000.0 rec/s   consume   20000.0 rec/s"),
        ({}, "9000.0 rec/s"),
        ({}, "500.0 complaints/s over 4.00 s"),
        ({}, "p50     20.0   p95     29.0   p99     29.8"),
        ({}, "p50     50.0   p95     59.0   p99     59.8"),
        ({}, "produce     0.050         consume     0.025"),
        ({"base_consume": 0.0}, "consume       n/a"),
        ({"acked_ms": []}, "p50      n/a   p95      n/a   p99      n/a"),
    ],
)
def test_report_contains(overrides: dict[str, object], expected: str) -> None:
    assert expected in format_report(_figures(**overrides))


def test_report_columns_line_up() -> None:
    lines = format_report(_figures()).splitlines()
    assert lines[0].startswith("complaints bench:")
    baseline, inbound, end_to_end, routed, acked, ratios = lines[1:]
    assert baseline.index("rec/s") == inbound.index("rec/s")
    assert baseline.index("consume") == ratios.index("consume")
    assert baseline.index("produce") == ratios.index("produce")
    assert routed.index("p50") == acked.index("p50") == baseline.index("produce")
    assert inbound.index(".0 ") == end_to_end.index(".0 ")


def test_report_has_no_contact_details() -> None:
    text = format_report(_figures())
    assert "@" not in text and "bench-" not in text
