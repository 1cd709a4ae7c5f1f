"""What-if: archived complaints' deadlines recomputed under another policy, old beside new.

The aggregation is table-tested; then a SQLite archive is filled through the archive's own
write path (``SqlStore.append``) with realistic complaints whose SLA alerts are made by the
SLA monitor's own rules, as the monitor would have published them (``monitor_alerts``), and
the what-if is run over it. ``archived_world`` is reused by tests/test_archive_cli.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import Engine

from schemas.envelope import Envelope, derived_id
from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Channel,
    Complaint,
    ComplaintRegistered,
    ComplaintRouted,
    Contact,
    Level,
    Nature,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
    RoutingDecision,
    Severity,
    SlaEvent,
)
from services.archive.adapters import SqlStore
from services.archive.database import make_engine, upgrade
from services.archive.recompute import (
    ALL,
    PERSON,
    Clock,
    Totals,
    person_milestone,
    rebuild,
    recompute,
    tally,
)
from services.archive.records import summarise
from services.archive.whatif import WhatIf, day_range, render, whatif
from services.common.policy import DEFAULT_POLICY, Policy, load_policy
from services.sla_monitor.calendar import load_calendar
from services.sla_monitor.facts import facts_of, terms_for
from services.sla_monitor.logic import CALENDAR_TIME, Calendars, fold, latest_route, owed
from tests.postgres import fresh_database, postgres_url  # noqa: F401 - the session fixture

SH = ZoneInfo("Asia/Shanghai")
POLICY = load_policy()
CALENDARS: Calendars = {"calendar": CALENDAR_TIME, "business": load_calendar()}
NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))


def local(day: int, hour: int, minute: int = 0, *, month: int = 11) -> datetime:
    """A Shanghai wall-clock time of 2026, in UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=SH).astimezone(UTC)


NOW = local(20, 12)


# ---- the world: complaints as the services publish them ----------------------------------


class Case:
    """One complaint's events, as intake, the router, handlers and the notifier publish them."""

    def __init__(self, cid: str, received: datetime, *, severity: Severity = Severity.general,
                 nature: Nature = Nature.complaint) -> None:
        self.cid = cid
        self.events: list[Envelope] = []
        complaint = Complaint(
            complaint_id=cid, channel=Channel.phone, nature=nature, received_at=received,
            source_message_id=f"phone:{cid}", customer=Contact(name="李雷", phone="+8613900139000"),
            customer_key="c" * 32, first_contact="call-centre", subject="售后维修太慢",
            description="手机送修两周还没修好", product="X200")
        self.registered = ComplaintRegistered.new(complaint, id=derived_id("whatif", cid, "reg"),
                                                  source="intake", time=received, subject=cid)
        self.events.append(self.registered)
        level = {Severity.general: Level.L1, Severity.urgent: Level.L2, Severity.major: Level.L3}[severity]
        self._add(ComplaintRouted, RoutingDecision(
            complaint_id=cid, nature=nature, received_at=received, code="AS-01", code_name_zh="维修周期长",
            code_name_en="Long repair cycle", severity=severity, department="service", level=level,
            handler="service-l1-01", first_contact_owner="call-centre", reasons=["keywords"]),
            received + timedelta(minutes=1), "router")

    def _add(self, cls: type[Envelope], data: Any, at: datetime, source: str) -> None:
        self.events.append(cls.new(data, id=derived_id("whatif", self.cid, str(len(self.events))),
                                   source=source, time=at, subject=self.cid, cause=self.registered))

    def case(self, at: datetime, action: CaseAction, *, actor: str = "service-l1-01", **fields: Any) -> Case:
        self._add(CaseEvent, CaseUpdate(complaint_id=self.cid, action=action, actor=actor, **fields), at,
                  "intake")
        return self

    def sent(self, at: datetime, kind: NotificationKind, *, role: str = "customer") -> Case:
        for status, when in (("queued", at - timedelta(seconds=30)), ("sent", at)):
            self._add(NotificationEvent, NotificationRecord(
                notification_id=f"{self.cid}-{kind.value}", complaint_id=self.cid, kind=kind,
                transport="sms-gateway:sms", role=role, recipient="+86*******9000", language="zh",
                status=status, attempt=int(status == "sent")), when, "notifier")  # type: ignore[arg-type]
        return self

    def handled(self, *, resolved: datetime, closed: bool = True) -> Case:
        """Acknowledged in 20 minutes, planned in 2 hours, resolved, fed back, surveyed, closed."""
        received = self.registered.data.received_at
        self.sent(received + timedelta(minutes=2), NotificationKind.acknowledgement)
        self.sent(received + timedelta(minutes=2), NotificationKind.assignment, role="handler")
        self.case(received + timedelta(minutes=20), CaseAction.acknowledged)
        self.case(received + timedelta(hours=2), CaseAction.plan_decided, note="送检，客户电话 13900139000")
        self.case(resolved, CaseAction.resolved, result="更换主板")
        self.sent(resolved + timedelta(minutes=10), NotificationKind.result)
        self.sent(resolved + timedelta(hours=48), NotificationKind.revisit)
        self.case(resolved + timedelta(hours=50), CaseAction.satisfaction, actor="customer", score=5,
                  note="满意，谢谢")
        if closed:
            self.case(resolved + timedelta(hours=51), CaseAction.closed)
        return self


def monitor_alerts(events: list[Envelope], *, policy: Policy, until: datetime) -> list[SlaEvent]:
    """The SLA alerts the monitor publishes for these events by ``until``: its own fold and
    ``owed``, evaluated whenever a fact comes and whenever a warning or deadline falls due."""
    routed = [e for e in events if isinstance(e, ComplaintRouted)]
    terms = terms_for(routed[0], policy=policy.sla, version=policy.version, scale=1.0)
    if terms is None:
        return []
    cid = routed[0].data.complaint_id
    facts = sorted({f.id: f for e in events for f in facts_of(e)}.values(), key=lambda f: (f.at, f.id))
    published: dict[str, SlaEvent] = {}
    pending = {f.at for f in facts}
    while pending and (now := min(pending)) <= until:
        pending.discard(now)
        seen = [f for f in facts if f.at <= now]
        items, upcoming = owed(cid, terms, fold(terms, seen, CALENDARS), latest_route(seen), CALENDARS,
                               now=now)
        for item in items:
            published.setdefault(item.event_id(), SlaEvent.new(
                item.alert, id=item.event_id(), source="sla-monitor", time=now, subject=cid,
                correlationid=terms.correlationid, causationid=terms.cause))
        if upcoming is not None:
            pending.add(upcoming)
    return list(published.values())


def world() -> list[Case]:
    """November 2026 (Shanghai; 8-hour working days 09-12, 13-18; resolve, general: 24 h of
    business time), and one October case outside the range."""
    return [
        Case("W-ONTIME", local(2, 9)).handled(resolved=local(2, 17)),  # 7 h
        Case("W-BORDER", local(3, 9)).handled(resolved=local(4, 15)),  # 13 h: on time, not under 12 h
        Case("W-LATE", local(4, 10)).handled(resolved=local(10, 11)),  # 33 h: late
        Case("W-OPEN", local(12, 10), severity=Severity.urgent)  # waits on the customer; no plan
        .sent(local(12, 10, 2), NotificationKind.acknowledgement)
        .case(local(12, 10, 20), CaseAction.acknowledged)
        .case(local(12, 10, 30), CaseAction.awaiting_customer),
        Case("W-PRAISE", local(6, 9), nature=Nature.praise).case(local(6, 10), CaseAction.closed),
        Case("W-OUT", local(20, 9, month=10)).handled(resolved=local(20, 15, month=10)),
    ]


def fill(store: SqlStore, cases: list[Case], *, policy: Policy = POLICY, until: datetime = NOW) -> None:
    """Archive every event of the cases and the monitor's alerts, through the archive's append."""
    for case in cases:
        published = case.events + monitor_alerts(case.events, policy=policy, until=until)
        store.append([summarise(e) for e in published], now=until)


def archived_world(url: str) -> Engine:
    """A migrated archive at ``url`` holding ``world()``."""
    engine = make_engine(url)
    upgrade(engine)
    fill(SqlStore(engine), world())
    return engine


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = archived_world(f"sqlite:///{tmp_path_factory.mktemp('whatif') / 'archive.sqlite3'}")
    yield engine
    engine.dispose()


def halved(tmp: Path) -> Policy:
    """The shipped policy with every resolve limit halved."""
    raw = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    resolve = raw["sla"]["milestones"]["resolve"]
    half = {"24h": "12h", "16h": "8h", "8h": "4h", "4h": "2h"}
    resolve["targets"] = {s: half[v] for s, v in resolve["targets"].items()}
    resolve["by_code"] = {c: {s: half[v] for s, v in t.items()} for c, t in resolve["by_code"].items()}
    raw["version"] = "resolve-halved"
    path = tmp / "halved.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_policy(path)


def run(engine: Engine, new: Policy = POLICY, **options: Any) -> WhatIf:
    return whatif(engine, policy_new=new, policy_old=POLICY, calendars=CALENDARS, date_from=NOVEMBER[0],
                  date_to=NOVEMBER[1], tz=SH, now=NOW, **options)


def row(w: WhatIf, milestone: str) -> Any:
    return next(r for r in w.rows if r.milestone == milestone)


# ---- the rules, table-tested ------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "on_time", "state"), [
    ("met", True, "on_time"),
    ("met", False, "late"),
    ("breached", False, "breached"),
    ("cancelled", None, "cancelled"),
    ("open", None, "open"),
])
def test_a_clock_state_is_its_outcome_with_met_split_by_the_deadline(outcome: str, on_time: bool | None,
                                                                    state: str) -> None:
    # Given a clock with an outcome, when its state is read, then met splits into on time and late
    assert Clock("resolve", 1, "general", outcome, on_time).state == state


@pytest.mark.parametrize(("states", "due", "on_time", "breached", "late", "rate"), [
    ({}, 0, 0, 0, 0, None),
    ({"open": 3, "cancelled": 2}, 0, 0, 0, 0, None),  # nothing came to an end: no rate
    ({"on_time": 49, "late": 1}, 50, 49, 1, 1, 0.98),
    ({"on_time": 3, "late": 1, "breached": 2, "cancelled": 1, "open": 4}, 6, 3, 3, 1, 0.5),
    ({"breached": 2}, 2, 0, 2, 0, 0.0),
])
def test_due_counts_what_came_to_an_end_and_breached_every_deadline_missed(
        states: dict[str, int], due: int, on_time: int, breached: int, late: int, rate: float | None) -> None:
    # Given a count per state, when tallied
    t = tally(states)
    # Then due is on time + late + breached, breached takes the late ones too, rate is on time / due
    assert (t.due, t.on_time, t.breached, t.late, t.rate) == (due, on_time, breached, late, rate)
    assert (t.cancelled, t.open) == (states.get("cancelled", 0), states.get("open", 0))


@pytest.mark.parametrize(("milestone", "person"), [
    ("acknowledge", False),  # met by the notifier's acknowledgement (or a person's, if first)
    ("respond", True),
    ("dispatch", False),  # met by the router's assignment
    ("plan", True),
    ("resolve", True),
    ("feedback", False),  # notified:result
    ("revisit", False),  # notified:revisit
])
def test_a_milestone_is_a_persons_unless_an_automatic_signal_can_meet_it(milestone: str, person: bool) -> None:
    # Given the shipped policy's milestone, when asked whether a person must meet it, then
    assert person_milestone(POLICY.sla.milestones[milestone]) is person  # type: ignore[index]


@pytest.mark.parametrize(("first", "last", "zone", "start", "end"), [
    (date(2026, 11, 1), date(2026, 11, 30), "Asia/Shanghai",
     datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 30, 16, tzinfo=UTC)),
    (date(2026, 11, 5), date(2026, 11, 5), "UTC",
     datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 11, 6, tzinfo=UTC)),
    (date(2026, 3, 29), date(2026, 3, 29), "Europe/Berlin",  # a 23-hour day (summer time begins)
     datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC)),
])
def test_a_range_of_local_dates_is_half_open_in_utc(first: date, last: date, zone: str, start: datetime,
                                                    end: datetime) -> None:
    # Given local dates, both included, when turned into instants, then they run to the next midnight
    assert day_range(first, last, ZoneInfo(zone)) == (start, end)


def _clocks(*states: tuple[str, str, str]) -> dict[tuple[str, int], Clock]:
    made = {"on_time": ("met", True), "late": ("met", False), "breached": ("breached", False),
            "cancelled": ("cancelled", None), "open": ("open", None)}
    return {(m, 1): Clock(m, 1, sev, *made[st]) for m, sev, st in states}


@pytest.mark.parametrize(("recorded", "old", "new", "changed", "mismatches"), [
    # the same everywhere: nothing changed, nothing mismatched
    ([("resolve", "general", "on_time")], [("resolve", "general", "on_time")],
     [("resolve", "general", "on_time")], 0, 0),
    # a shorter limit makes an on-time resolution late
    ([("resolve", "general", "on_time")], [("resolve", "general", "on_time")],
     [("resolve", "general", "late")], 1, 0),
    # the record says late where OLD says on time (another policy ran): a mismatch, no change
    ([("resolve", "general", "late")], [("resolve", "general", "on_time")],
     [("resolve", "general", "on_time")], 0, 1),
    # a milestone only NEW has (or only the record): changed, and mismatched
    ([("plan", "urgent", "open")], [], [("plan", "urgent", "breached")], 1, 1),
])
def test_totals_count_changes_between_old_and_new_and_mismatches_with_the_record(
        recorded: list[tuple[str, str, str]], old: list[tuple[str, str, str]], new: list[tuple[str, str, str]],
        changed: int, mismatches: int) -> None:
    # Given one complaint's recorded, OLD and NEW clocks
    totals = Totals(person={"plan": True, "resolve": True, "feedback": False})
    # When counted
    totals.add("C1", recorded=_clocks(*recorded), old=_clocks(*old), new=_clocks(*new))
    rows, by_severity = totals.rows()
    # Then the changes and the mismatches are counted, and the rows add up per source
    assert sum(r.changed for r in rows if r.milestone != PERSON) == changed
    assert totals.mismatches == mismatches and len(totals.examples) == mismatches
    assert [r.milestone for r in rows] == ["plan", "resolve", "feedback", PERSON]
    person = rows[-1]
    assert (person.old.due, person.new.due) == (sum(r.old.due for r in rows[:2]), sum(r.new.due for r in rows[:2]))
    assert all(r.severity == ALL for r in rows) and all(r.severity != ALL for r in by_severity)


def test_totals_put_rows_by_severity_apart_and_leave_out_the_empty_ones() -> None:
    # Given two complaints of different severities
    totals = Totals(person={"resolve": True, "feedback": False})
    totals.add("C1", recorded={}, old=_clocks(("resolve", "general", "on_time")),
               new=_clocks(("resolve", "general", "late")))
    totals.add("C2", recorded={}, old=_clocks(("resolve", "major", "breached")),
               new=_clocks(("resolve", "major", "breached")))
    # When the rows are made
    rows, by_severity = totals.rows()
    # Then each severity has its own resolve row, and feedback (no clock) none
    assert [(r.milestone, r.severity, r.old.on_time, r.new.on_time, r.changed) for r in by_severity] == [
        ("resolve", "general", 1, 0, 1), ("resolve", "major", 0, 0, 0)]
    assert (rows[0].old.due, rows[0].old.rate, rows[0].new.rate) == (2, 0.5, 0.0)


# ---- one complaint: the monitor's view restored from the archive ------------------------------


def test_the_facts_restored_from_the_archive_are_the_ones_the_monitor_read() -> None:
    # Given complaints' events as published (customer notes, scrubbed staff notes, a praise)
    for case in world():
        archived = [summarise(e) for e in case.events]
        # When the monitor's envelopes are restored from their archived summaries
        rebuilt = rebuild(case.cid, archived)
        # Then they give exactly the facts the monitor took from the originals, none unreadable
        expected = sorted({f.id: f for e in case.events for f in facts_of(e)}.values(), key=lambda f: (f.at, f.id))
        assert rebuilt.facts == expected, case.cid
        assert rebuilt.unreadable == 0
        assert [r.id for r in rebuilt.routed] == [e.id for e in case.events if isinstance(e, ComplaintRouted)]


@pytest.mark.parametrize(("now", "state"), [
    (local(5, 12), "open"),  # before the deadline (Monday 11-09 10:00), not resolved yet
    (local(9, 12), "breached"),  # past it, still not resolved
    (NOW, "late"),  # resolved on Tuesday 11-10
])
def test_a_clock_stands_as_it_did_at_the_time_asked(now: datetime, state: str) -> None:
    # Given the late case, when its clocks are recomputed as of a time
    late = next(c for c in world() if c.cid == "W-LATE")
    clocks = recompute(rebuild(late.cid, [summarise(e) for e in late.events]), policy=POLICY,
                       calendars=CALENDARS, now=now)
    # Then its resolve clock stands as it did then, with the deadline of 24 working hours
    assert clocks is not None
    assert clocks[("resolve", 1)].state == state
    assert clocks[("resolve", 1)].deadline == local(9, 10)


# ---- the archive ----------------------------------------------------------------------


EXPECTED_OLD = {  # milestone: (due, on time, breached, open) under the shipped policy
    "acknowledge": (4, 4, 0, 0), "respond": (4, 4, 0, 0), "dispatch": (4, 4, 0, 0),
    "plan": (4, 3, 1, 0),  # W-OPEN never got a plan: breached after 24 h
    "resolve": (3, 2, 1, 1),  # W-LATE late; W-OPEN paused, waiting on the customer
    "feedback": (3, 3, 0, 0), "revisit": (3, 3, 0, 0),
    PERSON: (11, 9, 2, 1),
}


def test_the_same_policy_changes_nothing_and_recomputes_what_was_recorded(archive: Engine) -> None:
    # Given November's archived complaints, when the what-if runs with the policy in force
    w = run(archive)
    # Then the range holds five complaints, four with deadlines (praise has none; October is out)
    assert (w.complaints, w.with_clocks, w.unreadable) == (5, 4, 0)
    # And OLD recomputed is the record, clock for clock, and NEW changes nothing
    assert (w.clocks, w.mismatches, w.mismatch_examples) == (26, 0, [])
    for r in w.rows + w.by_severity:
        assert r.changed == 0 and r.old == r.new == r.recorded, r
    # And the figures are the expected ones
    assert {r.milestone: (r.old.due, r.old.on_time, r.old.breached, r.old.open) for r in w.rows} == EXPECTED_OLD
    assert row(w, PERSON).person and not row(w, "acknowledge").person


def test_halving_the_resolve_limit_breaches_the_late_and_the_borderline_case(archive: Engine,
                                                                              tmp_path: Path) -> None:
    # Given the archive, when the what-if runs with every resolve limit halved
    w = run(archive, halved(tmp_path))
    # Then W-LATE stays late and W-BORDER (13 working hours) misses its 12: one more breach
    resolve = row(w, "resolve")
    assert (resolve.old.on_time, resolve.new.on_time) == (2, 1)
    assert (resolve.old.breached, resolve.new.breached) == (1, 2)
    assert (resolve.old.rate, resolve.new.rate) == (2 / 3, 1 / 3)
    assert resolve.changed == 1
    # And the person total says so; the other milestones did not move; the record still matches OLD
    person = row(w, PERSON)
    assert (person.old.on_time, person.new.on_time, person.changed) == (9, 8, 1)
    assert all(r.old == r.new for r in w.rows if r.milestone not in ("resolve", PERSON))
    assert w.mismatches == 0 and w.policy_new == "resolve-halved"
    # And the change is the general severity's
    assert [(r.milestone, r.severity) for r in w.by_severity if r.changed] == [("resolve", "general")]
    # And the table shows it old -> new
    table = render(w, policy_file="halved.yaml")
    line = next(ln for ln in table.splitlines() if ln.startswith("resolve "))
    assert line.split()[1:] == ["person", "3", "->", "3", "2", "->", "1", "1", "->", "2", "66.7%", "->",
                                "33.3%", "1", "->", "1", "1", "2/3", "on", "time"]


def test_the_reading_streams_in_chunks_of_any_size_and_keeps_to_the_range(archive: Engine) -> None:
    # Given the archive, when read one row at a time, then the result is the same as in big chunks
    assert run(archive, chunk=1) == run(archive)
    # And a range with nothing received in it is empty
    empty = whatif(archive, policy_new=POLICY, policy_old=POLICY, calendars=CALENDARS,
                   date_from=date(2026, 9, 1), date_to=date(2026, 9, 30), tz=SH, now=NOW)
    assert (empty.complaints, empty.with_clocks, empty.clocks) == (0, 0, 0)
    # And October alone holds the one case outside November
    october = whatif(archive, policy_new=POLICY, policy_old=POLICY, calendars=CALENDARS,
                     date_from=date(2026, 10, 1), date_to=date(2026, 10, 31), tz=SH, now=NOW)
    assert (october.complaints, october.with_clocks, october.mismatches) == (1, 1, 0)


def test_the_what_if_reads_as_json(archive: Engine) -> None:
    # Given a what-if, when turned into JSON data, then dates are ISO and each tally has its rate
    data = run(archive).as_json()
    assert data["date_from"] == "2026-11-01" and data["now"] == NOW.isoformat()
    resolve = next(r for r in data["rows"] if r["milestone"] == "resolve")
    assert resolve["old"]["rate"] == pytest.approx(2 / 3) and resolve["old"]["due"] == 3


@pytest.mark.integration
def test_on_postgresql_too_the_record_matches_and_halving_breaches(postgres_url: str,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    # Given the same archive on PostgreSQL (server-side cursors, two streams merged by id)
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_database(postgres_url))
        engine = archived_world(url)
        stack.callback(engine.dispose)
        # When the what-if runs, in small chunks, then it reads as on SQLite
        same = run(engine, chunk=3)
        assert (same.mismatches, same.clocks, same.complaints) == (0, 26, 5)
        assert {r.milestone: (r.old.due, r.old.on_time, r.old.breached, r.old.open)
                for r in same.rows} == EXPECTED_OLD
        assert row(run(engine, halved(tmp_path), chunk=2), "resolve").new.on_time == 1
