"""The pure parts of the pipeline's steady mode (`complaints bench --rate R --duration S`): the
send schedule, the accounting of what was sent, seen and left over, the CPU figures and the
report. No I/O (tools/bench/steady_run.py drives the run, tools/bench/procs.py reads /proc).

Open loop: complaint i is due at start + i / R whatever became of the ones before it. Each
send records when it was due and when it went out; the difference (the slip) shows a client
that could not keep the schedule. Latencies of each hop count from the actual send.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tools.bench.report import _baseline_rows, _block, _num, _pcts, percentile, rate

FINAL = ("acked", "ack_deferred", "ack_failed", "dead")  # a complaint's loop is over
HOPS = ("registered", "routed", "acked")  # the kinds timed hop by hop, in order


def check_flags(*, stage: str, count: int | None, rate: float | None, duration: float | None,
                steady: float | None) -> str | None:
    """Why the bench's flags contradict each other (the message), or None when they agree.

    ``--rate`` with ``--duration`` is the pipeline's steady mode; ``--rate`` with ``--steady``
    the archive stage's steady phase; ``--count`` the burst of either."""
    if stage == "archive":
        if duration is not None:
            return "--duration is the pipeline's steady mode; the archive stage's is --steady S"
        return None
    if steady is not None:
        return "--steady is the archive stage's; the pipeline's steady mode is --rate R --duration S"
    if rate is None and duration is None:
        return None
    if stage != "pipeline":
        return f"--rate/--duration: the steady mode runs the pipeline stage only, not --stage {stage}"
    if count is not None:
        return "--count is the burst; --rate R --duration S the steady mode: give one or the other"
    if rate is None or duration is None:
        missing = "--rate" if rate is None else "--duration"
        return f"the steady mode needs both --rate R and --duration S (missing {missing})"
    if rate <= 0 or duration <= 0:
        return "--rate and --duration must be positive"
    if rate * duration < 1:
        return "--rate x --duration must be at least one complaint"
    return None


def steady_senders(rate: float) -> int:
    """HTTP senders of the steady mode unless told: enough for answers of up to 4 s to keep
    the schedule (4 x rate), at least 16, at most 256 threads."""
    return min(256, max(16, math.ceil(4 * rate)))


def schedule(rate: float, duration: float) -> list[float]:
    """Each complaint's send time, seconds after the start: i / rate for every i whose time
    falls within ``duration`` (at least one)."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    n = max(1, math.ceil(rate * duration - 1e-9))
    return [i / rate for i in range(n)]


@dataclass(frozen=True)
class Send:
    """One scheduled complaint: its key (the inbound event id; over HTTP the complaint id of
    the 202, "" without one), perf_counter times, and how it went."""

    key: str
    due: float
    sent: float
    answered: float = math.nan  # HTTP: the answer's arrival
    ok: bool = True  # the broker took it / a fresh 202
    detail: str = ""  # what went wrong ("" when ok), e.g. "503 (Unavailable)"


def slips_ms(sends: Sequence[Send]) -> list[float]:
    """How late each send went out against its schedule, in ms (never below 0)."""
    return [max(0.0, s.sent - s.due) * 1000 for s in sends]


def achieved_rate(sends: Sequence[Send]) -> float:
    """Sends per second between the first and the last send; NaN under two sends."""
    if len(sends) < 2:
        return math.nan
    times = [s.sent for s in sends]
    return rate(len(times) - 1, max(times) - min(times))


def settled_at(key: str, seen: Mapping[str, Mapping[str, float]]) -> float | None:
    """When the complaint's loop ended (its first final outcome seen), or None."""
    times = [seen[k][key] for k in FINAL if key in seen.get(k, {})]
    return min(times) if times else None


def hop_ms(sends: Sequence[Send], seen: Mapping[str, float]) -> list[float]:
    """Milliseconds from each accepted send to the sighting in ``seen``."""
    return [(seen[s.key] - s.sent) * 1000 for s in sends if s.ok and s.key in seen]


def backlog(sends: Sequence[Send], seen: Mapping[str, Mapping[str, float]], at: float,
            kind: str | None = None) -> int:
    """Accepted complaints not yet through at ``at``: not yet seen as ``kind``, or (None) not
    yet settled."""
    n = 0
    for s in sends:
        if not s.ok:
            continue
        t = settled_at(s.key, seen) if kind is None else seen.get(kind, {}).get(s.key)
        if t is None or t > at:
            n += 1
    return n


def drain_seconds(sends: Sequence[Send], seen: Mapping[str, Mapping[str, float]], at: float
                  ) -> float | None:
    """Seconds from ``at`` until the last accepted complaint settled (0 when none was left);
    None while any is unsettled."""
    last = at
    for s in sends:
        if s.ok:
            t = settled_at(s.key, seen)
            if t is None:
                return None
            last = max(last, t)
    return last - at


@dataclass(frozen=True)
class CpuRow:
    """One process of the stack: CPU seconds over the idle sample and over the steady window."""

    name: str
    pids: tuple[int, ...]
    kind: str
    idle_s: float  # CPU seconds during the idle sample
    load_s: float  # CPU seconds during the steady window
    note: str = ""


def cpu_rows(names: Sequence[tuple[str, tuple[int, ...], str, str]], idle: tuple[Mapping[str, int],
             Mapping[str, int]], load: tuple[Mapping[str, int], Mapping[str, int]], hz: int
             ) -> list[CpuRow]:
    """CPU seconds per member from (start, end) tick samples of the idle and the load windows;
    a member missing from a sample gets NaN."""
    def delta(pair: tuple[Mapping[str, int], Mapping[str, int]], name: str) -> float:
        if name in pair[0] and name in pair[1]:
            return (pair[1][name] - pair[0][name]) / hz
        return math.nan
    return [CpuRow(name, pids, kind, delta(idle, name), delta(load, name), note)
            for name, pids, kind, note in names]


@dataclass(frozen=True)
class SteadyFigures:
    """What one steady run measured (times in perf_counter seconds, latencies in ms)."""

    run_id: str
    via: str
    rate: float  # asked
    duration: float
    scheduled: int
    sends: Sequence[Send]
    seen: Mapping[str, Mapping[str, float]]  # kind -> key -> first sighting
    start: float  # the schedule's start
    end: float  # the window's end (the schedule's last due time and the duration passed)
    cap: float  # how long the drain was waited for
    partitions: int
    base_produce: float
    base_consume: float
    aio_produce: float
    aio_consume: float
    cpu: Sequence[CpuRow] = ()
    idle_seconds: float = math.nan
    concurrency: int = 1


def _per_complaint_ms(cpu_s: float, n: int) -> float:
    return 1000 * cpu_s / n if n else math.nan


def _cpu_lines(f: SteadyFigures) -> list[str]:
    """The CPU table: % of one core idle and under load, CPU seconds of the window, CPU ms
    per complaint, and the same above idle (the window's CPU less the idle rate's share)."""
    window = f.end - f.start
    done = sum(1 for s in f.sends if s.ok)
    head = (f"  CPU per process (idle: {_num(f.idle_seconds)} s before the load; load: the "
            f"{_num(window)} s window, {done} complaints accepted):")
    cols = (f"    {'process':<22}{'pids':<14}{'idle %core':>11}{'load %core':>11}{'CPU s':>8}"
            f"{'ms/complaint':>14}{'above idle':>12}")
    lines = [head, cols]
    total_idle = total_load = 0.0

    def cells(idle_s: float, load_s: float) -> str:
        above = load_s - idle_s / f.idle_seconds * window
        return (f"{_num(100 * idle_s / f.idle_seconds):>11}{_num(100 * load_s / window):>11}"
                f"{_num(load_s, 2):>8}{_num(_per_complaint_ms(load_s, done), 2):>14}"
                f"{_num(_per_complaint_ms(above, done), 2):>12}")

    for r in f.cpu:
        label = f"{r.name} ({r.kind})" if r.kind and r.kind != r.name else r.name
        if not r.pids:
            lines.append(f"    {label:<22}{'-':<14}{r.note}")
            continue
        pids = ",".join(map(str, r.pids))[:13]
        note = f"   {r.note}" if r.note not in ("", "by port") else ""
        lines.append(f"    {label[:21]:<22}{pids:<14}{cells(r.idle_s, r.load_s)}{note}")
        if not r.name.startswith("bench"):
            total_idle += 0.0 if math.isnan(r.idle_s) else r.idle_s
            total_load += 0.0 if math.isnan(r.load_s) else r.load_s
    lines.append(f"    {'stack total':<22}{'':<14}{cells(total_idle, total_load)}")
    return lines


def format_steady(f: SteadyFigures) -> str:
    """The pasteable text block of the steady mode."""
    ok = [s for s in f.sends if s.ok]
    slips = slips_ms(f.sends)
    settled = sum(1 for s in ok if settled_at(s.key, f.seen) is not None)
    counts = {k: sum(1 for s in ok if s.key in f.seen.get(k, {})) for k in FINAL}
    drained = drain_seconds(f.sends, f.seen, f.end)
    first = "POST" if f.via == "http" else "inbound"
    how = (f"signed web_form POSTs, {f.concurrency} senders" if f.via == "http"
           else "inbound events to complaints.inbound")
    failed = f", {len(f.sends) - len(ok)} failed" if len(ok) < len(f.sends) else ""
    behind = ("   THE CLIENT FELL BEHIND (latencies count from the actual send)"
              if percentile(slips, 99) > max(100.0, 500 / f.rate) else "")
    rows = [
        *_baseline_rows(f),
        ("schedule:", f"{f.rate:g} complaints/s for {f.duration:g} s = {f.scheduled} ({how})"),
        ("achieved send rate:",
         f"{_num(achieved_rate(f.sends), 2)} /s; {len(f.sends)} sent, {len(ok)} accepted{failed}"),
        ("schedule slip (ms):", f"p50 {_num(percentile(slips, 50)):>8}   "
                                f"p99 {_num(percentile(slips, 99)):>8}   "
                                f"max {_num(max(slips, default=math.nan)):>8}{behind}"),
    ]
    if f.via == "http":
        rows.append(("latency POST -> 202 (ms):", _pcts([(s.answered - s.sent) * 1000 for s in ok])))
    for kind, label in (("registered", "registered"), ("routed", "routed"),
                        ("acked", "acknowledgement sent")):
        rows.append((f"latency {first} -> {label} (ms):", _pcts(hop_ms(ok, f.seen.get(kind, {})))))
    if counts["ack_deferred"]:
        rows.append((f"latency {first} -> ack deferred (ms):",
                     _pcts(hop_ms(ok, f.seen["ack_deferred"]))))
    not_reg = backlog(f.sends, f.seen, f.end, "registered")
    not_routed = backlog(f.sends, f.seen, f.end, "routed")
    rows += [
        ("completed:", f"{settled} of {len(ok)} settled (acknowledged {counts['acked']}, "
                       f"deferred {counts['ack_deferred']}, failed {counts['ack_failed']}, "
                       f"dead-lettered {counts['dead']})"),
        ("backlog at the window's end:", f"{backlog(f.sends, f.seen, f.end)} not settled "
                                         f"(not registered {not_reg}, not routed {not_routed})"),
        ("drain:", f"{_num(drained, 2)} s after the window" if drained is not None
         else f"NOT DRAINED within {f.cap:g} s: {backlog(f.sends, f.seen, math.inf)} never settled"),
    ]
    failures = sorted({s.detail for s in f.sends if not s.ok})
    if failures:
        rows.append(("failures:", "; ".join(failures)[:200]))
    text = _block(f"complaints bench: stage=pipeline mode=steady via={f.via} rate={f.rate:g}/s "
                  f"duration={f.duration:g} s (run id {f.run_id}; order: idle CPU, broker "
                  "baselines, then the steady load)", rows)
    return "\n".join([text, *_cpu_lines(f)]) if f.cpu else text
