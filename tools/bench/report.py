"""The pure parts of `complaints bench`: what watched events and answers say, percentiles,
rates, ratios and the reports. No I/O."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from schemas.topics import DEADLETTER, NOTIFICATIONS, REGISTERED, ROUTED


def intake_base_url(explicit: str | None, environ: Mapping[str, str]) -> str:
    """``--intake-url``, else http://127.0.0.1:$INTAKE_HTTP_PORT (default 8080); no trailing /."""
    url = explicit or f"http://127.0.0.1:{environ.get('INTAKE_HTTP_PORT') or '8080'}"
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return url.rstrip("/")


def classify(topic: str, event: Any) -> tuple[str, str] | None:
    """(what happened, inbound event id) that one watched event tells; None if nothing.

    routed / registered: by correlation id; acknowledgement: "acked" when sent, else
    "ack_failed"; dead letter: "dead", by the id of the original (inbound) event.
    """
    if not isinstance(event, dict):
        return None
    raw_data = event.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    cid = event.get("correlationid")
    if topic == DEADLETTER.name:
        try:
            original = json.loads(base64.b64decode(str(data.get("original") or ""), validate=True))
        except (ValueError, binascii.Error):
            return None
        oid = original.get("id") if isinstance(original, dict) else None
        return ("dead", oid) if isinstance(oid, str) else None
    if not isinstance(cid, str):
        return None
    if topic in (ROUTED.name, REGISTERED.name):
        return ("routed" if topic == ROUTED.name else "registered"), cid
    if topic == NOTIFICATIONS.name and data.get("kind") == "acknowledgement":
        status = data.get("status")
        # the bench's stack has no real transport: the outbox's write is the notifier's last step
        return {"sent": ("acked", cid), "outboxed": ("acked", cid), "failed": ("ack_failed", cid),
                "deferred": ("ack_deferred", cid)}.get(str(status))
    return None


def answer_detail(status: int, raw: bytes) -> str:
    """"" for a fresh registration; "duplicate" for a 202 of an earlier one; else the title."""
    try:
        body = json.loads(raw)
    except ValueError:
        return "" if status == 202 else "not JSON"
    if not isinstance(body, dict):
        return ""
    if status == 202:
        return "duplicate" if body.get("duplicate") else ""
    return str(body.get("title") or "")[:80]



def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def rate(count: int, seconds: float) -> float:
    """Items per second; NaN when no time has passed."""
    return count / seconds if seconds > 0 else math.nan


def ratio(part: float, whole: float) -> float:
    """part / whole; NaN when whole is not a positive number."""
    return part / whole if whole > 0 else math.nan


def per_process(total: float, processes: int) -> float:
    """A rate measured over all processes, shared evenly; NaN for fewer than one process."""
    return total / processes if processes >= 1 else math.nan


def latencies_ms(sent: Mapping[str, float], seen: Mapping[str, float]) -> list[float]:
    """Milliseconds from send to sight for every id seen that was also sent."""
    return [(at - sent[key]) * 1000 for key, at in seen.items() if key in sent]


def failure_kinds(failures: Sequence[tuple[int, str]], most: int = 4) -> str:
    """"503 x2 (why), 0 x1 (ConnectionResetError)" over (HTTP status, detail) pairs, commonest
    first, at most ``most`` kinds; status 0 means no answer (the detail names the exception)."""
    kinds = Counter(failures).most_common()
    parts = [f"{status} x{n}" + (f" ({detail})" if detail else "") for (status, detail), n in kinds]
    more = f", and {len(kinds) - most} more kinds" if len(kinds) > most else ""
    return ", ".join(parts[:most]) + more


@dataclass(frozen=True)
class Figures:
    """What one pipeline run measured; rates in records (or complaints) per second."""

    count: int
    run_id: str
    partitions: int
    base_produce: float
    base_consume: float
    inbound_produce: float
    end_to_end: float  # first inbound sent -> last acknowledgement seen
    seconds: float  # that span
    routed_ms: Sequence[float]
    acked_ms: Sequence[float]
    aio_produce: float = math.nan  # the same baseline with aiokafka (faust's client)
    aio_consume: float = math.nan


@dataclass(frozen=True)
class IntakeFigures:
    """What one intake run measured: inbound events (Kafka) or POSTs (HTTP) to registrations."""

    count: int
    run_id: str
    via: str  # "kafka" or "http"
    partitions: int
    base_produce: float
    base_consume: float
    input_rate: float  # kafka: inbound records produced/s; http: answers/s
    registered: int
    seconds: float  # kafka: first inbound sent -> last registration seen; http: POST phase
    latency_ms: Sequence[float]
    failed: int = 0
    failure_note: str = ""
    concurrency: int = 1
    processes: int = 1
    stage: str = "intake"  # or "router": registered events in, routing decisions out
    aio_produce: float = math.nan  # the same baseline with aiokafka (faust's client)
    aio_consume: float = math.nan

    @property
    def registrations(self) -> float:
        return rate(self.registered, self.seconds)

    @property
    def per_process(self) -> float:
        return per_process(self.registrations, self.processes)


def _num(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _pcts(values: Sequence[float]) -> str:
    return "   ".join(f"p{q} {_num(percentile(values, q)):>8}" for q in (50, 95, 99))


class _Based(Protocol):
    """A report's baselines: kafka-python's (base_*) and aiokafka's (aio_*), records/s."""

    @property
    def partitions(self) -> int: ...
    @property
    def base_produce(self) -> float: ...
    @property
    def base_consume(self) -> float: ...
    @property
    def aio_produce(self) -> float: ...
    @property
    def aio_consume(self) -> float: ...


def _baseline_rows(f: _Based) -> list[tuple[str, str]]:
    """The baseline of each client, kafka-python (the figures' reference) first."""
    return [(f"broker baseline (kafka-python, 1 topic, {f.partitions} partitions):",
             f"produce {_num(f.base_produce):>9} rec/s   consume {_num(f.base_consume):>9} rec/s"),
            ("broker baseline (aiokafka, the same topic):",
             f"produce {_num(f.aio_produce):>9} rec/s   consume {_num(f.aio_consume):>9} rec/s")]


def _ratio_rows(what: str, value: float, f: _Based) -> list[tuple[str, str]]:
    """``value`` over each client's baseline: kafka-python's (as the earlier figures), aiokafka's."""
    return [(f"ratio {what} / {client} baseline:", f"produce {_num(ratio(value, produce), 3):>9}         "
             f"consume {_num(ratio(value, consume), 3):>9}")
            for client, produce, consume in (("kafka-python", f.base_produce, f.base_consume),
                                             ("aiokafka", f.aio_produce, f.aio_consume))]


def _thousands(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"


def format_broker_baseline(kafka_python: tuple[float, float], aiokafka: tuple[float, float],
                           partitions: int) -> str:
    """The archive stage's broker baseline line: (produce/s, consume/s) of each client."""
    return ("  baseline  broker: " + "; ".join(
        f"{client} produce {_thousands(produce)} / consume {_thousands(consume)} rec/s"
        for client, (produce, consume) in (("kafka-python", kafka_python), ("aiokafka", aiokafka)))
        + f" ({partitions} partitions)")


def _block(head: str, rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join([head, *(f"  {label:<{width}}{value}" for label, value in rows)])


def format_report(f: Figures) -> str:
    """The pasteable text block of the pipeline stage."""
    rows = [
        *_baseline_rows(f),
        ("pipeline inbound produce:", f"        {_num(f.inbound_produce):>9} rec/s"),
        ("pipeline end-to-end (inbound -> ack sent):",
         f"        {_num(f.end_to_end):>9} complaints/s over {_num(f.seconds, 2)} s"),
        ("latency inbound -> routed (ms):", _pcts(f.routed_ms)),
        ("latency inbound -> acknowledged (ms):", _pcts(f.acked_ms)),
        *_ratio_rows("end-to-end", f.end_to_end, f),
    ]
    return _block(f"complaints bench: stage=pipeline via=kafka N={f.count} (run id {f.run_id}; "
                  "order: broker baselines, then pipeline)", rows)


def format_intake_report(f: IntakeFigures) -> str:
    """The pasteable text block of the intake stage (Kafka or HTTP) or the router stage."""
    http = f.via == "http"
    clients = f"{f.concurrency} HTTP connections; " if http else ""
    if f.stage == "router":
        produced, done, what, unit = ("registered produce", "registered -> last routed",
                                      "routing decisions:", "router")
    elif f.stage == "notifier":
        produced, done, what, unit = ("registered produce", "registered -> last sent",
                                      "notifications sent:", "notifier")
    else:
        produced = "HTTP POST web_form" if http else "inbound produce"
        done = "first POST -> last 202" if http else "inbound -> last registered"
        what, unit = "registrations:", "intake"
    rows = [
        *_baseline_rows(f),
        (f"{f.stage} input ({produced}):",
         f"        {_num(f.input_rate):>9} {'req/s' if http else 'rec/s'}"),
        (f"{ {'router': 'routed', 'notifier': 'sent'}.get(f.stage, 'registered')} ({done}):",
         f"        {f.registered:>9} of {f.count} in {_num(f.seconds, 2)} s"),
        (what, f"        {_num(f.registrations):>9} /s (per {unit} process: "
               f"{_num(f.per_process)} /s; {unit} processes: {f.processes})"),
        (f"latency {'POST -> 202' if http else done.replace(' last', '')} (ms):", _pcts(f.latency_ms)),
        *_ratio_rows("per process", f.per_process, f),
    ]
    if f.failed or http:
        note = f"   {f.failure_note}" if f.failure_note else ""
        rows.append(("failed:", f"        {f.failed:>9}{note}"))
    return _block(f"complaints bench: stage={f.stage} via={f.via} N={f.count} (run id {f.run_id}; "
                  f"{clients}order: broker baselines, then {f.stage})", rows)


@dataclass(frozen=True)
class SlaFigures:
    """What one SLA lateness run measured: breaches due while the monitor was under load."""

    count: int  # complaints
    run_id: str
    partitions: int
    base_produce: float
    base_consume: float
    alerts: int          # every alert of the run's complaints seen on complaints.sla
    breaches: int        # breaches seen of the expected ones
    expected: int
    seconds: float       # first routed produced -> last breach seen
    emitted_ms: Sequence[float]  # observed_at (the monitor's emission) minus the deadline
    seen_ms: Sequence[float]     # arrival at this process minus the deadline
    spread: float        # deadlines spread over this many seconds
    aio_produce: float = math.nan  # the same baseline with aiokafka (faust's client)
    aio_consume: float = math.nan


def format_sla_report(f: SlaFigures) -> str:
    """The pasteable text block of the SLA stage."""
    rows = [
        *_baseline_rows(f),
        ("alerts of the run on complaints.sla:", f"        {f.alerts:>9} in {_num(f.seconds, 2)} s "
                                                 f"({_num(rate(f.alerts, f.seconds))} /s)"),
        ("breaches seen:", f"        {f.breaches:>9} of {f.expected} (deadlines spread over "
                           f"{_num(f.spread, 0)} s)"),
        ("lateness, emitted - deadline (ms):", _pcts(f.emitted_ms)),
        ("lateness, seen here - deadline (ms):", _pcts(f.seen_ms)),
        *_ratio_rows("alerts/s", rate(f.alerts, f.seconds), f),
    ]
    return _block(f"complaints bench: stage=sla N={f.count} complaints (run id {f.run_id}; "
                  "order: broker baselines, then routed decisions whose deadlines fall due)", rows)


def format_footprint(families: Mapping[str, tuple[int, int]], count: int, prefix: str) -> str:
    """The Redis memory under the run's prefix, per service and per complaint, scaled to 1M."""
    total = sum(b for _, b in families.values())
    lines = [f"redis footprint under {prefix!r} after {count} complaints: "
             f"{sum(n for n, _ in families.values())} keys, {total / 2**20:.1f} MiB "
             f"({total / count:.0f} B per complaint; {total / count * 1e6 / 2**30:.2f} GiB per million)"]
    for family, (n, size) in sorted(families.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"  {family:<10} {n:>8} keys {size / 2**20:>8.1f} MiB  {size / count:>7.0f} B/complaint")
    return "\n".join(lines)
