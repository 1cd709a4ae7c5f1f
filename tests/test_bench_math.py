"""The pure parts of `complaints bench`: load, event classes, percentiles, rates, ratios, reports."""

from __future__ import annotations

import base64
import json
import math

import pytest

from schemas.events import Channel
from services.intake import channels
from services.intake.channels import web_form
from tools.bench.load import TEXTS, channel_payload, web_form_bodies
from tools.bench.report import (
    Figures,
    IntakeFigures,
    answer_detail,
    classify,
    failure_kinds,
    format_broker_baseline,
    format_intake_report,
    format_report,
    intake_base_url,
    latencies_ms,
    per_process,
    percentile,
    rate,
    ratio,
)


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
        aio_produce=25_000.0, aio_consume=50_000.0,
    )
    fields.update(overrides)
    return Figures(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "stage=pipeline via=kafka N=2000 (run id abc12345; order: broker baselines, then pipeline)"),
        ({}, "1 topic, 6 partitions"),
        ({}, "produce   10000.0 rec/s   consume   20000.0 rec/s"),
        ({}, "9000.0 rec/s"),
        ({}, "500.0 complaints/s over 4.00 s"),
        ({}, "p50     20.0   p95     29.0   p99     29.8"),
        ({}, "p50     50.0   p95     59.0   p99     59.8"),
        ({}, "produce     0.050         consume     0.025"),
        ({"base_consume": 0.0}, "consume       n/a"),
        ({}, "broker baseline (aiokafka, the same topic):"),
        ({}, "produce   25000.0 rec/s   consume   50000.0 rec/s"),
        ({}, "ratio end-to-end / kafka-python baseline:"),
        ({}, "ratio end-to-end / aiokafka baseline:"),
        ({}, "produce     0.020         consume     0.010"),
        ({"aio_produce": float("nan"), "aio_consume": float("nan")},
         "produce       n/a rec/s   consume       n/a rec/s"),
        ({"acked_ms": []}, "p50      n/a   p95      n/a   p99      n/a"),
    ],
)
def test_report_contains(overrides: dict[str, object], expected: str) -> None:
    assert expected in format_report(_figures(**overrides))


def test_report_columns_line_up() -> None:
    lines = format_report(_figures()).splitlines()
    assert lines[0].startswith("complaints bench:")
    baseline, aio_baseline, inbound, end_to_end, routed, acked, ratios, aio_ratios = lines[1:]
    assert baseline.index("produce") == aio_baseline.index("produce") == aio_ratios.index("produce")
    assert baseline.index("rec/s") == aio_baseline.index("rec/s")
    assert ratios.index("consume") == aio_ratios.index("consume")
    assert baseline.index("rec/s") == inbound.index("rec/s")
    assert baseline.index("consume") == ratios.index("consume")
    assert baseline.index("produce") == ratios.index("produce")
    assert routed.index("p50") == acked.index("p50") == baseline.index("produce")
    assert inbound.index(".0 ") == end_to_end.index(".0 ")


def test_report_has_no_contact_details() -> None:
    text = format_report(_figures())
    assert "@" not in text and "bench-" not in text


# ---- intake stage --------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "processes", "expected"),
    [(900.0, 1, 900.0), (900.0, 3, 300.0), (0.0, 2, 0.0), (900.0, 0, math.nan),
     (math.nan, 2, math.nan)],
)
def test_per_process(total: float, processes: int, expected: float) -> None:
    assert per_process(total, processes) == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        ([], ""),
        ([(503, "Temporarily unavailable")], "503 x1 (Temporarily unavailable)"),
        ([(401, "Unauthorized"), (503, "x"), (401, "Unauthorized")], "401 x2 (Unauthorized), 503 x1 (x)"),
        ([(0, "ConnectionResetError"), (202, "duplicate")], "0 x1 (ConnectionResetError), 202 x1 (duplicate)"),
        ([(500, "")], "500 x1"),
        ([(s, "") for s in (500, 501, 502, 503, 504, 505)],
         "500 x1, 501 x1, 502 x1, 503 x1, and 2 more kinds"),
    ],
)
def test_failure_kinds(failures: list[tuple[int, str]], expected: str) -> None:
    assert failure_kinds(failures) == expected


@pytest.mark.parametrize(
    ("status", "raw", "expected"),
    [
        (202, b'{"complaint_id": "C1", "duplicate": false}', ""),
        (202, b'{"complaint_id": "C1", "duplicate": true}', "duplicate"),
        (202, b"not json", ""),
        (401, b'{"title": "Unauthorized", "detail": "signature does not match"}', "Unauthorized"),
        (422, b'{"title": "Invalid payload"}', "Invalid payload"),
        (502, b"<html>bad gateway</html>", "not JSON"),
        (500, b"[]", ""),
    ],
)
def test_answer_detail(status: int, raw: bytes, expected: str) -> None:
    assert answer_detail(status, raw) == expected


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        (None, {}, "http://127.0.0.1:8080"),
        (None, {"INTAKE_HTTP_PORT": "58080"}, "http://127.0.0.1:58080"),
        (None, {"INTAKE_HTTP_PORT": ""}, "http://127.0.0.1:8080"),
        ("http://intake.local:9000/", {"INTAKE_HTTP_PORT": "58080"}, "http://intake.local:9000"),
        ("https://gw.example/intake/", {}, "https://gw.example/intake"),
    ],
)
def test_intake_base_url(explicit: str | None, environ: dict[str, str], expected: str) -> None:
    assert intake_base_url(explicit, environ) == expected


@pytest.mark.parametrize("bad", ["127.0.0.1:8080", "ftp://host/", "http://"])
def test_intake_base_url_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        intake_base_url(bad, {})


def test_web_form_bodies_are_valid_distinct_forms() -> None:
    bodies = web_form_bodies("run1", 7)
    parsed = [web_form.parse(json.loads(b)) for b in bodies]
    assert len({p.message_id for p in parsed}) == 7
    assert parsed[0].message_id == "bench-run1-0" and parsed[6].message_id == "bench-run1-6"
    assert all(p.text for p in parsed)
    assert "收到" in bodies[4].decode()  # UTF-8 as is, not \\u escapes


@pytest.mark.parametrize("channel", ["web_form", "phone", "email", "store"])
@pytest.mark.parametrize("i", [0, 4])  # an English text and the Chinese one
def test_channel_payload_parses_in_its_channel(channel: str, i: int) -> None:
    parsed = channels.parse(Channel(channel), channel_payload(channel, i, f"bench-r-{i}"))
    assert TEXTS[i] in parsed.text
    assert parsed.message_id is not None and f"bench-r-{i}" in parsed.message_id
    assert parsed.email or parsed.phone  # the acknowledgement needs somewhere to go


def test_channel_payload_refuses_unknown_channels() -> None:
    with pytest.raises(ValueError, match="no payload"):
        channel_payload("letter", 0, "x")


def _dead(original: object) -> dict[str, object]:
    raw = original if isinstance(original, bytes) else json.dumps(original).encode()
    return {"correlationid": "dl-own", "data": {"original": base64.b64encode(raw).decode()}}


@pytest.mark.parametrize(
    ("topic", "event", "expected"),
    [
        ("complaints.registered", {"correlationid": "in-1", "data": {}}, ("registered", "in-1")),
        ("complaints.routed", {"correlationid": "in-2", "data": {"desk": "x"}}, ("routed", "in-2")),
        ("complaints.notifications",
         {"correlationid": "in-3", "data": {"kind": "acknowledgement", "status": "sent"}}, ("acked", "in-3")),
        ("complaints.notifications",
         {"correlationid": "in-3", "data": {"kind": "acknowledgement", "status": "failed"}},
         ("ack_failed", "in-3")),
        ("complaints.notifications", {"correlationid": "in-3", "data": {"kind": "sla_warning"}}, None),
        ("complaints.notifications",
         {"correlationid": "in-3", "data": {"kind": "acknowledgement", "status": "queued"}}, None),
        ("complaints.deadletter", _dead({"id": "in-4", "type": "inbound.received"}), ("dead", "in-4")),
        ("complaints.deadletter", _dead(b"not json at all"), None),
        ("complaints.deadletter", _dead([1, 2]), None),
        ("complaints.deadletter", {"data": {"original": "%%% not base64"}}, None),
        ("complaints.deadletter", {"data": {}}, None),
        ("complaints.registered", {"data": {}}, None),  # no correlation id
        ("complaints.registered", {"correlationid": 7}, None),
        ("complaints.registered", ["not", "an", "object"], None),
        ("complaints.lifecycle", {"correlationid": "in-5", "data": {}}, None),
    ],
)
def test_classify(topic: str, event: object, expected: tuple[str, str] | None) -> None:
    assert classify(topic, event) == expected


def _intake(**overrides: object) -> IntakeFigures:
    fields: dict[str, object] = dict(
        count=2000, run_id="abc12345", via="http", partitions=6, base_produce=10_000.0,
        base_consume=20_000.0, input_rate=800.0, registered=2000, seconds=2.5,
        latency_ms=[10.0, 20.0, 30.0], concurrency=16, aio_produce=16_000.0, aio_consume=32_000.0,
    )
    fields.update(overrides)
    return IntakeFigures(**fields)  # type: ignore[arg-type]


def _row(report: str, label: str) -> str:
    return next(line for line in report.splitlines() if line.lstrip().startswith(label))


@pytest.mark.parametrize(
    ("overrides", "label", "expected"),
    [
        ({}, "broker baseline (kafka-python", "produce   10000.0 rec/s   consume   20000.0 rec/s"),
        ({}, "broker baseline (aiokafka", "produce   16000.0 rec/s   consume   32000.0 rec/s"),
        ({}, "ratio per process / kafka-python baseline:", "produce     0.080         consume     0.040"),
        ({}, "ratio per process / aiokafka baseline:", "produce     0.050         consume     0.025"),
        ({"processes": 4}, "ratio per process / aiokafka baseline:",
         "produce     0.013         consume     0.006"),
        ({"aio_produce": 0.0}, "ratio per process / aiokafka baseline:", "produce       n/a"),
    ],
)
def test_intake_report_divides_by_each_clients_baseline(overrides: dict[str, object], label: str,
                                                        expected: str) -> None:
    # Given an intake run with both clients' baselines
    # When its report is printed
    # Then each baseline has its row and the ratio is given against each, kafka-python's first
    report = format_intake_report(_intake(**overrides))
    assert expected in _row(report, label)
    assert report.index("(kafka-python") < report.index("(aiokafka")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "complaints bench: stage=intake via=http N=2000 (run id abc12345; 16 HTTP connections; "
             "order: broker baselines, then intake)"),
        ({"via": "kafka"}, "complaints bench: stage=intake via=kafka N=2000 (run id abc12345; "
                           "order: broker baselines, then intake)"),
        ({}, "intake input (HTTP POST web_form):"),
        ({}, "800.0 req/s"),
        ({"via": "kafka"}, "intake input (inbound produce):"),
        ({"via": "kafka"}, "800.0 rec/s"),
        ({}, "2000 of 2000 in 2.50 s"),
        ({}, "registrations:"),
        ({}, "800.0 /s (per intake process: 800.0 /s; intake processes: 1)"),
        ({"processes": 4}, "800.0 /s (per intake process: 200.0 /s; intake processes: 4)"),
        ({"registered": 1000}, "400.0 /s (per intake process: 400.0 /s"),
        ({}, "latency POST -> 202 (ms):"),
        ({"via": "kafka"}, "latency inbound -> registered (ms):"),
        ({}, "p50     20.0   p95     29.0   p99     29.8"),
        ({}, "produce     0.080         consume     0.040"),
        ({"processes": 4}, "produce     0.020         consume     0.010"),
        ({"seconds": 0.0}, "n/a /s (per intake process: n/a /s; intake processes: 1)"),
        ({"failed": 3, "failure_note": "503 x3 (Temporarily unavailable)"},
         "3   503 x3 (Temporarily unavailable)"),
    ],
)
def test_intake_report_contains(overrides: dict[str, object], expected: str) -> None:
    assert expected in format_intake_report(_intake(**overrides))


@pytest.mark.parametrize(
    ("overrides", "has_failed_row"),
    [({}, True), ({"via": "kafka"}, False), ({"via": "kafka", "failed": 2}, True)],
)
def test_intake_report_failed_row(overrides: dict[str, object], has_failed_row: bool) -> None:
    assert ("failed:" in format_intake_report(_intake(**overrides))) is has_failed_row


@pytest.mark.parametrize("via", ["http", "kafka"])
def test_intake_report_columns_line_up(via: str) -> None:
    lines = format_intake_report(_intake(via=via, failed=1)).splitlines()
    assert lines[0].startswith(f"complaints bench: stage=intake via={via} N=2000")
    baseline, aio_baseline, inbound, registered, registrations, latency, ratios, aio_ratios, failed = lines[1:]
    assert baseline.index("produce") == aio_baseline.index("produce") == aio_ratios.index("produce")
    assert ratios.index("consume") == aio_ratios.index("consume")
    assert baseline.index("produce") == ratios.index("produce") == latency.index("p50")
    assert baseline.index("consume") == ratios.index("consume")
    assert baseline.index("/s") == inbound.index("/s")  # rec/s or req/s, one column
    assert inbound.index(".0 ") == registrations.index(".0 ")
    assert registered.index(" of ") == failed.index("1") + 1


def test_intake_report_has_no_contact_details() -> None:
    text = format_intake_report(_intake())
    assert "@" not in text and "bench-" not in text


@pytest.mark.parametrize(
    ("aiokafka", "expected"),
    [
        ((6_589.4, 7_901.0), "  baseline  broker: kafka-python produce 3,441 / consume 4,615 rec/s; "
                             "aiokafka produce 6,589 / consume 7,901 rec/s (6 partitions)"),
        ((math.nan, math.nan), "  baseline  broker: kafka-python produce 3,441 / consume 4,615 rec/s; "
                               "aiokafka produce n/a / consume n/a rec/s (6 partitions)"),
    ],
)
def test_archive_broker_baseline_names_both_clients(aiokafka: tuple[float, float], expected: str) -> None:
    # Given the two clients' baselines of one archive run
    # When the archive stage prints its broker baseline line
    # Then kafka-python's comes first (the earlier figures' client), aiokafka's beside it
    assert format_broker_baseline((3_441.0, 4_615.2), aiokafka, 6) == expected
