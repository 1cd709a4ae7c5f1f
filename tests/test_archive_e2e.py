"""Issue 12's proof: CFPB complaints replayed through the five services and driven to resolution
fill the archive, and `complaints report` over them gives the figures this test recomputes from
the events on the topics (never from the archive database), by the rules of docs/reports.md.

CFPB exports carry no contact details, so their customers get no revisit (回访) and the response
rate would have nothing to count: five more rows of the same file come in by the web form with an
e-mail address. SLA targets are scaled 3600 times on the always-open calendar (tests/conftest.py),
so a working day is 24 hours and handling time in working days is plain elapsed time.
Left out: the weekly trend and forecast (only complete weeks before today count, so these cases
are in none; the method is tested on series in tests/test_report_forecast.py), and the handlers'
table (the departments' is compared; the handlers' is the same sums by another column).
The HTML report of the same period goes to test-output/reports/archive-e2e-zh.html and is
opened in Chromium (tests/test_report_browser.py's helpers), its screenshot kept beside it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from services.archive.database import make_engine
from services.archive.tables import events as archived_events
from services.common.policy import Policy, load_policy
from tests.harness import Service, TopicReader, post_inbound, staff_step, wait_for
from tests.test_report_browser import MEASURE, browser, keep_screenshot, open_report  # noqa: F401
from tools.replay import cfpb
from tools.replay.run import replay

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).parent / "data" / "cfpb" / "cfpb-2013-08-10.csv"
REPLAYED, WITH_EMAIL = 60, 5  # rows replayed from the export; later Web rows sent with an e-mail
TOPICS = tuple(t.name for t in (REGISTERED, ROUTED, LIFECYCLE, SLA, NOTIFICATIONS))
OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "reports"
STATUS = {"acknowledged": "open", "plan_decided": "open", "customer_replied": "open",
          "awaiting_customer": "awaiting_customer", "resolved": "resolved", "reopened": "reopened",
          "closed": "closed"}  # what a case action makes of the status (others leave it)
ENDED = ("met", "breached", "cancelled")
ROUNDING = 0.5e-4 + 1e-9  # the report rounds days and hours to four places


# ---- the events, complaint by complaint ------------------------------------------------


@dataclass
class Case:
    """What the topics say of one complaint."""

    cid: str
    nature: str | None = None
    received: datetime | None = None
    channel: str | None = None
    route: dict[str, Any] = field(default_factory=dict)  # the decision of the highest revision
    escalated_to: list[str] = field(default_factory=list)  # level of each escalated decision
    actions: list[tuple[str, dict[str, Any], datetime]] = field(default_factory=list)  # in time order
    clocks: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    revisit_sent: bool = False  # sent by a transport: the stack's notifier has none (see revisit_out)
    revisit_out: bool = False  # gone out: sent, or written to the stack's file outbox (outboxed)

    def times(self, action: str) -> list[datetime]:
        return [t for a, _, t in self.actions if a == action]

    def waited(self, action: str, which: int) -> float:
        """Seconds from receipt to the action's first (0) or last (-1) time."""
        assert self.received is not None
        return (self.times(action)[which] - self.received).total_seconds()

    @property
    def status(self) -> str:
        return next((STATUS[a] for a, _, _ in reversed(self.actions) if a in STATUS), "open")

    @property
    def score(self) -> int | None:  # the latest answer
        return next((d["score"] for a, d, _ in reversed(self.actions) if a == "satisfaction"), None)

    def ended(self, milestone: str, cycle: int, *, met: bool = False) -> bool:
        outcomes = {a["outcome"] for a in self.clocks.get((milestone, cycle), [])}
        return "met" in outcomes if met else bool(outcomes & set(ENDED))

    def clock(self, milestone: str, cycle: int) -> tuple[int, int]:
        """(due, on time): a deadline that came to an end, met (its first met says if on time) or breached."""
        alerts = self.clocks.get((milestone, cycle), [])
        met = sorted((a for a in alerts if a["outcome"] == "met"), key=lambda a: at(a["observed_at"]))
        if met:
            return 1, int(bool(met[0]["on_time"]))
        return (1, 0) if any(a["outcome"] == "breached" for a in alerts) else (0, 0)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def fold(events: list[dict[str, Any]]) -> dict[str, Case]:
    """Every complaint's Case from the topics' events (each event once, in time order)."""
    once = sorted({e["id"]: e for e in events}.values(), key=lambda e: (at(e["time"]), e["id"]))
    cases: dict[str, Case] = {}
    for e in once:
        d = e["data"]
        c = cases.setdefault(d["complaint_id"], Case(d["complaint_id"]))
        if e["type"] == "complaint.registered":
            c.nature, c.received, c.channel = d["nature"], at(d["received_at"]), d["channel"]
        elif e["type"] == "complaint.routed":
            if d["revision"] > c.route.get("revision", 0):
                c.route = d
            if c.received is None:  # the registration not read (yet): the decision carries both
                c.nature, c.received = d["nature"], at(d["received_at"])
            if d["decision"] == "escalated":
                c.escalated_to.append(d["level"])
        elif e["type"] == "case.updated":
            c.actions.append((d["action"], d, at(e["time"])))
        elif e["type"] == "sla.alert":
            c.clocks[(d["milestone"], d["cycle"])].append(d)
        elif e["type"] == "notification.recorded" and d["kind"] == "revisit" and d["status"] in ("sent", "outboxed"):
            c.revisit_out = True
            c.revisit_sent = c.revisit_sent or d["status"] == "sent"
    return cases


# ---- the figures, from those events, by the rules of docs/reports.md -------------------


def person_milestones(policy: Policy) -> set[str]:
    """Milestones a person meets: none of their stop signals is a notification or a routing."""
    return {m.value for m, rule in policy.sla.milestones.items()
            if not any(s.startswith("notified:") or s in ("routed", "assigned") for s in rule.stop_on)}


def rate(n: int, d: int) -> float | None:
    return n / d if d else None


def expected(cases: dict[str, Case], first: date, last: date, policy: Policy) -> dict[str, Any]:
    """The report's figures over the feedback received from ``first`` to ``last`` (local dates)."""
    tz, person = ZoneInfo(policy.reports.timezone), person_milestones(policy)
    feedback = [c for c in cases.values() if c.received and first <= c.received.astimezone(tz).date() <= last]
    cs = [c for c in feedback if c.nature == "complaint"]
    resolved = [c for c in cs if c.times("resolved")]
    days = sorted(c.waited("resolved", -1) / 86400 for c in resolved)  # always open: a working day is 24 h
    responded = [c.waited("acknowledged", 0) / 3600 for c in cs if c.times("acknowledged")]
    answered = [c for c in cs if c.score is not None]
    surveyed = [c for c in cs if c.revisit_sent]
    clocks = [(m, cyc, *c.clock(m, cyc)) for c in cs for (m, cyc) in c.clocks]
    due = sum(d for m, _, d, _ in clocks if m in person)
    on_time = sum(o for m, _, _, o in clocks if m in person)
    first_resolve = [(d, o) for m, cyc, d, o in clocks if m == "resolve" and cyc == 1]
    n = len(cs)

    def by(dim: str, of: list[Case]) -> dict[str, int]:
        def value(c: Case) -> str | None:
            return c.channel if dim == "channel" else c.nature if dim == "nature" else c.route.get(dim)
        return dict(Counter(value(c) or "unknown" for c in of))

    return {
        "headline": {
            "complaints": (n, n),
            "open_cases": (sum(c.status not in ("resolved", "closed") for c in cs), n),
            "timeliness": (rate(on_time, due), due),
            "resolution_rate": (rate(sum(o for _, o in first_resolve), sum(d for d, _ in first_resolve)),
                                sum(d for d, _ in first_resolve)),
            "handling_days_avg": (statistics.fmean(days) if days else None, len(days)),
            "handling_days_median": (statistics.median(days) if days else None, len(days)),
            "handling_days_p90": (days[math.ceil(0.9 * len(days)) - 1] if days else None, len(days)),
            "response_hours_avg": (statistics.fmean(responded) if responded else None, len(responded)),
            "satisfaction_rate": (rate(sum(c.score >= policy.reports.satisfied_at_least  # type: ignore[operator]
                                           for c in answered), len(answered)), len(answered)),
            "response_rate": (rate(sum(c.score is not None for c in surveyed), len(surveyed)), len(surveyed)),
            "reopen_rate": (rate(sum(bool(c.times("reopened")) for c in resolved), len(resolved)), len(resolved)),
            "repeat_rate": (rate(sum(bool(c.route.get("repeat_of")) for c in cs), n), n),
            "escalation_rate": (rate(sum(bool(c.escalated_to) for c in cs), n), n),
        },
        "volume": {**{dim: by(dim, cs) for dim in ("channel", "code", "department", "severity")},
                   "nature": by("nature", feedback)},
        "timeliness": {m: (sum(d for mm, _, d, _ in clocks if mm == m), sum(o for mm, _, _, o in clocks if mm == m))
                       for m in {m for m, *_ in clocks}},
        "person": person,
        "escalations": dict(Counter(lv for c in cs for lv in c.escalated_to)),
        "departments": {k: (v, sum(1 for c in resolved if c.route.get("department") == k),
                            sum(1 for c in answered if c.route.get("department") == k))
                        for k, v in by("department", cs).items()},
    }


def assert_report_matches(report: dict[str, Any], want: dict[str, Any], was: dict[str, Any]) -> None:
    """Every figure of the report equals the one recomputed (this period and the previous)."""
    for fig in report["headline"]:
        (value, count), previous = want["headline"][fig["key"]], was["headline"][fig["key"]][0]
        close = pytest.approx(value, abs=ROUNDING) if fig["unit"] in ("days", "hours") and value else value
        assert (fig["value"], fig["count"]) == (close, count), fig["key"]
        if fig["unit"] in ("days", "hours") and previous:
            previous = pytest.approx(previous, abs=ROUNDING)
        assert fig["previous"] == previous, fig["key"]
    for b in report["breakdowns"]:
        got = {r["key"]: r["count"] for r in b["rows"] if r["count"]}
        assert got == want["volume"][b["dimension"]], b["dimension"]
        total = sum(got.values())
        assert all(r["share"] == pytest.approx(r["count"] / total) for r in b["rows"]), b["dimension"]
    rows = {r["milestone"]: r for r in report["timeliness"]}
    assert {m for m, r in rows.items() if r["person"]} == want["person"]
    assert {m: (r["due"], r["on_time"]) for m, r in rows.items() if r["due"]} == \
        {m: v for m, v in want["timeliness"].items() if v[0]}
    assert all(r["breached"] == r["due"] - r["on_time"] for r in rows.values())
    assert {lv: n for lv, (n, _) in report["escalations"].items() if n} == want["escalations"]
    assert {r["key"]: (r["cases"], r["resolved"], r["answers"]) for r in report["by_department"]
            if r["cases"]} == want["departments"]
    assert [(r["code"], r["count"]) for r in report["pareto"]] == sorted(
        want["volume"]["code"].items(), key=lambda kv: (-kv[1], kv[0]))


# ---- driving the cases -----------------------------------------------------------------


class Desk:
    """A handler's and customers' steps on cases, through intake's case-event API."""

    def __init__(self, intake_url: str, reader: TopicReader, desk_url: str) -> None:
        self.url, self.reader, self.desk_url = intake_url, reader, desk_url

    def cases(self) -> dict[str, Case]:
        self.reader.poll()
        return fold(self.reader.events)

    def step(self, cid: str, action: str, **fields: object) -> None:
        if action == "satisfaction":  # the customer's answer: the survey channel, no staff token
            status, body = post_inbound(self.url, "survey_reply", {
                "complaint_id": cid, "score": fields["score"], "survey_id": f"S-{uuid.uuid4().hex[:12]}"})
        else:  # a handler's step: the desk, the actor from the token
            status, body = staff_step(self.desk_url, cid, {"action": action, "actor": "agent-e2e", **fields})
        assert status == 202, (cid, action, body)

    def resolve(self, cid: str, score: int | None = None) -> None:
        self.step(cid, "resolved", result="Account corrected and the fee refunded")
        if score is not None:
            self.step(cid, "satisfaction", score=score)

    def until(self, cids: list[str], ok: Any, what: str, timeout: float = 90) -> dict[str, Case]:
        """Wait until ``ok(case)`` holds for every one of ``cids``."""
        def done() -> dict[str, Case] | None:
            cases = self.cases()
            return cases if all(cid in cases and ok(cases[cid]) for cid in cids) else None
        result: dict[str, Case] = wait_for(done, timeout=timeout, what=f"{what} ({len(cids)} complaints)",
                                           interval=0.25)
        return result


def settled(c: Case) -> bool:
    """Every clock of the case that started came to an end, the last cycles included."""
    if not all(c.ended(m, cyc) for (m, cyc) in c.clocks):
        return False
    resolutions, reopens = len(c.times("resolved")), len(c.times("reopened"))
    if c.status in ("resolved", "closed"):
        return (c.ended("resolve", reopens + 1, met=True) and c.ended("feedback", resolutions)
                and c.ended("revisit", resolutions))
    return c.ended("resolve", reopens + 1) and c.ended("respond", 1)


def drive(desk: Desk, replayed: list[str], emailed: list[str]) -> None:
    """Take the complaints round the loop, a varied mix, until each is in its final state."""
    handle = ("acknowledged", "plan_decided")
    for cid in emailed:  # first: their revisit goes out 48 s (48 h / 3600) after the resolution
        for action in handle:
            desk.step(cid, action)
        desk.resolve(cid)
    unhappy, reopened, late = replayed[0], replayed[1], replayed[2::6]
    for i, cid in enumerate(replayed):
        kind = i % 6
        if kind == 0 and cid != unhappy:
            continue  # nobody acts: every person's deadline is breached, and it escalates
        desk.step(cid, "acknowledged")
        if kind == 1 and cid != reopened:
            continue  # acknowledged only: stays open, breaches its resolve deadline
        desk.step(cid, "plan_decided")
        if cid == unhappy:  # a dissatisfied answer: the notifier reopens it, the router escalates
            desk.resolve(cid, score=1)
        elif cid == reopened:  # reopened by the handler: a new resolve cycle, left open
            desk.resolve(cid)
            desk.step(cid, "reopened", note="The refund did not arrive")
        elif kind in (3, 4, 5):  # resolved at once: satisfied (and closed) or not
            desk.resolve(cid, score={3: 4 + i % 2, 4: 5, 5: 3}[kind])
            if kind == 4:
                desk.step(cid, "closed")
    desk.until([unhappy], lambda c: c.status == "reopened", "the dissatisfied case reopened")
    desk.resolve(unhappy, score=4)  # resolved again, and satisfied this time
    desk.step(unhappy, "closed")
    # kind 2: resolved after their resolve deadline was breached (met late)
    desk.until(late, lambda c: c.ended("resolve", 1), "the late ones' resolve deadline breached")
    for i, cid in enumerate(late):
        desk.resolve(cid, score=(5, 4, 3)[i % 3])
    # the customers with an address get the revisit; three of the five answer it
    desk.until(emailed, lambda c: c.revisit_out, "the revisits out", timeout=120)
    for cid, score in zip(emailed, (5, 4, 3), strict=False):
        desk.step(cid, "satisfaction", score=score)
    desk.until(replayed + emailed, settled, "every case in its final state", timeout=120)


# ---- the report, over a quiet archive ---------------------------------------------------


@dataclass(frozen=True)
class Run:
    """The driven complaints, the environment of the stack, the reader of the topics."""

    env: dict[str, str]
    mine: list[str]
    reader: TopicReader

    def period(self, policy: Policy) -> tuple[date, date]:
        """From the local date of the first of these complaints to today (a run may cross midnight)."""
        tz = ZoneInfo(policy.reports.timezone)
        cases = fold(self.reader.events)
        first = min(cases[cid].received for cid in self.mine if cases[cid].received)  # type: ignore[type-var]
        return first.astimezone(tz).date(), datetime.now(tz).date()  # type: ignore[union-attr]


def complaints(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`complaints ARGS` as a user runs it, on the stack's archive database and calendar."""
    script = shutil.which("complaints", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "tools.cli"]
    return subprocess.run([*command, *args], env={**os.environ, **env}, capture_output=True,  # noqa: S603
                          text=True, timeout=120, check=False)


def read_to_end(reader: TopicReader) -> dict[Any, int]:
    """Read every topic up to its end offsets taken now; return those offsets."""
    ends: dict[Any, int] = reader.consumer.end_offsets(list(reader.consumer.assignment()))

    def done() -> bool:
        reader.poll()
        return all(reader.consumer.position(tp) >= end for tp, end in ends.items())

    wait_for(done, timeout=60, what="the topics read to their end")
    return ends


def quiet_report(run: Run, policy: Policy) -> tuple[dict[str, Any], dict[str, Case], date, date]:
    """The JSON report made while no event arrived, the archive holding every event on the topics.

    Other complaints of the session may still be moving (a breach, its escalation): the report is
    made again until the topics' end offsets are the same after it as before the archive was
    checked, so the report and the events read are of the same moment.
    """
    engine = make_engine(run.env["ARCHIVE_DATABASE_URL"])

    def archived() -> set[str]:
        with engine.connect() as conn:
            return set(conn.execute(select(archived_events.c.event_id)).scalars())

    def attempt() -> tuple[dict[str, Any], dict[str, Case], date, date] | None:
        ends = read_to_end(run.reader)
        on_topics = {e["id"] for e in run.reader.events}
        wait_for(lambda: on_topics <= archived(), timeout=60, what="the archive to hold every event")
        if run.reader.consumer.end_offsets(list(ends)) != ends:
            return None  # more came meanwhile: read again before making the report
        first, last = run.period(policy)
        done = complaints(run.env, "report", "--from", first.isoformat(), "--to", last.isoformat(),
                          "--format", "json", "--lang", "en")
        assert done.returncode == 0, done.stderr
        if run.reader.consumer.end_offsets(list(ends)) != ends:
            return None  # something happened while the report was made: again
        return json.loads(done.stdout), fold(run.reader.events), first, last

    started = time.monotonic()
    try:
        result: tuple[dict[str, Any], dict[str, Case], date, date] = wait_for(
            attempt, timeout=180, what="a report made while no event arrived", interval=0.5)
    finally:
        engine.dispose()
    print(f"report over a quiet archive: {time.monotonic() - started:.0f} s")
    return result


@pytest.fixture(scope="module")
def driven(broker: str, stack: dict[str, Service], stack_env: dict[str, str], intake_url: str,
           desk_url: str) -> Iterator[Run]:
    """CFPB complaints replayed through the stack and driven to their final states."""
    reader, started = TopicReader(broker, *TOPICS), time.monotonic()
    try:
        # Given the first rows of a CFPB export replayed onto complaints.inbound, as live traffic
        summary = replay(SAMPLE, fmt="cfpb", limit=REPLAYED, timeout=120, bootstrap=[broker], progress=False)
        assert (summary.sent, summary.missing, summary.complaints) == (REPLAYED, 0, REPLAYED), summary
        rows = list(cfpb.cfpb_rows(SAMPLE))
        replayed = [summary.complaint_ids[mid] for _, mid, _ in rows[:REPLAYED]]
        # and later Web rows of the same export sent by the web form with the consumer's e-mail
        emailed = []
        for _, mid, payload in [r for r in rows[REPLAYED:] if r[0].value == "web_form"][:WITH_EMAIL]:
            email = f"consumer.{mid.removeprefix('cfpb:')}@example.com"
            status, body = post_inbound(intake_url, "web_form", {**payload, "email": email})  # type: ignore[dict-item]
            assert status == 202, body
            emailed.append(body["complaint_id"])
        desk = Desk(intake_url, reader, desk_url)
        desk.until(replayed + emailed, lambda c: bool(c.route), "routed")
        print(f"replayed, registered and routed: {time.monotonic() - started:.0f} s")
        # When handlers and customers take them round the loop
        drive(desk, replayed, emailed)
        print(f"driven to their final states: {time.monotonic() - started:.0f} s")
        yield Run(env=stack_env, mine=replayed + emailed, reader=reader)
    finally:
        reader.close()


@dataclass(frozen=True)
class Made:
    """A JSON report of the period and the complaints as the topics had them when it was made."""

    report: dict[str, Any]
    cases: dict[str, Case]
    first: date
    last: date


@pytest.fixture(scope="module")
def made(driven: Run) -> Made:
    """`complaints report --format json` over the driven complaints' period, once."""
    return Made(*quiet_report(driven, load_policy()))


@pytest.mark.timeout(480)
def test_the_report_over_replayed_cfpb_complaints_gives_the_figures_their_events_give(
        driven: Run, made: Made) -> None:
    # Given the driven complaints in the archive; When `complaints report --format json` runs
    policy = load_policy()
    report, cases, first, last = made.report, made.cases, made.first, made.last
    # Then every figure equals the one recomputed from the events on the topics
    want = expected(cases, first, last, policy)
    was = expected(cases, first - (last - first) - timedelta(days=1), first - timedelta(days=1), policy)
    for fig in report["headline"]:
        print(f"{fig['key']:22} {fig['value']!s:24} over {fig['count']}")
    print("escalations", report["escalations"], "timeliness",
          {r["milestone"]: (r["on_time"], r["due"]) for r in report["timeliness"]})
    assert_report_matches(report, want, was)
    # And the period holds these complaints, in the mix they were driven to
    tz = ZoneInfo(policy.reports.timezone)
    assert all(first <= cases[cid].received.astimezone(tz).date() <= last for cid in driven.mine)  # type: ignore[union-attr]
    mine = [cases[cid] for cid in driven.mine]
    assert Counter(c.status for c in mine) >= Counter({"closed": 11, "resolved": 35, "reopened": 1})
    assert sum(bool(c.times("reopened")) for c in mine) == 2
    assert sum(c.revisit_out for c in mine) >= WITH_EMAIL and sum(c.score is not None for c in mine) >= 40
    assert any(c.escalated_to for c in mine)


@pytest.mark.timeout(480)
def test_the_same_period_rendered_in_chinese_draws_its_charts_in_a_browser(
        driven: Run, made: Made, browser: Any, tmp_path: Path) -> None:  # noqa: F811
    # Given the archive the driven complaints filled, and the report's own figures of the period
    report, first, last = made.report, made.first, made.last
    # When the same period is rendered as HTML in Chinese and opened in Chromium
    OUTPUT.mkdir(parents=True, exist_ok=True)
    out = OUTPUT / "archive-e2e-zh.html"
    done = complaints(driven.env, "report", "--from", first.isoformat(), "--to", last.isoformat(),
                      "--format", "html", "--lang", "zh", "--out", str(out))
    assert done.returncode == 0, done.stderr
    print(f"report: {out}")
    page = open_report(browser, out.read_text(encoding="utf-8"), tmp_path / out.name)
    keep_screenshot(page, tmp_path, "archive-e2e-zh")
    # Then every chart is there, and the volume charts drew a bar for each value of the period
    charts = {c["section"]: c for c in page.evaluate(MEASURE)}
    assert {"volume-channel", "volume-department", "volume-severity", "timeliness", "escalations",
            "pareto", "trend"} <= set(charts)
    for b in report["breakdowns"]:
        if b["dimension"] in ("channel", "severity", "nature"):
            assert charts[f"volume-{b['dimension']}"]["bars"] == sum(r["count"] > 0 for r in b["rows"])
    assert charts["escalations"]["bars"] == sum(n > 0 for n, _ in report["escalations"].values())
    assert page.locator("h1").inner_text().strip()
    page.close()
