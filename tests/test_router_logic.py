"""Router rules as tables: text and channel facts in; code, severity, level, owner, ladder out;
what each input causes; the booking rule the Redis scripts apply."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Channel,
    Complaint,
    Contact,
    DecisionKind,
    Level,
    Milestone,
    Nature,
    RoutingDecision,
    Severity,
    SlaAlert,
    SlaEvent,
    SlaOutcome,
)
from services.common.errors import ConfigError, Rejected
from services.common.policy import load_policy
from services.router.classify import amounts_in, assess
from services.router.logic import (
    HANDLER,
    HANDLER_REASON,
    Booked,
    Booking,
    BookingMode,
    Effect,
    Escalate,
    Ignore,
    Reclassify,
    Release,
    ReleaseStatus,
    Seat,
    book,
    booking_mode,
    case_effect,
    escalate,
    fill,
    first_route,
    reclassify,
    release,
    sla_effect,
)
from services.router.ports import PriorComplaint
from services.router.roster import Span, load_roster
from services.router.taxonomy import load_taxonomy

POLICY = load_policy()
RULES = POLICY.router
TAXONOMY = load_taxonomy()


def complaint(text: str, first_contact: str = "web-desk", *, nature: Nature = Nature.complaint,
              **details: str | int | float | bool) -> Complaint:
    return Complaint(
        complaint_id="261123-0000000001", channel=Channel.web_form, nature=nature,
        received_at=datetime(2026, 11, 23, 9, tzinfo=UTC), source_message_id="m",
        customer=Contact(), customer_key="k", first_contact=first_contact, subject=text[:40],
        description=text, details=details)


@pytest.mark.parametrize(("text", "details", "severity", "signal"), [
    ("The screen is broken after a week", {}, Severity.general, "no severity signal"),
    ("充电器起火了，孩子手被烫伤", {}, Severity.major, "safety"),
    ("I will ask my lawyer about this overcharge", {}, Severity.major, "legal_action"),
    ("已经向12315投诉了", {}, Severity.urgent, "regulator"),
    ("I sent this to the CFPB", {}, Severity.urgent, "regulator"),
    ("市场监管部门会处理", {}, Severity.urgent, "regulator"),
    ("A journalist friend will hear about this", {}, Severity.urgent, "media"),
    ("The product made my son sick", {}, Severity.urgent, "health"),
    ("Many customers have the same problem", {}, Severity.urgent, "many_affected"),
    ("Bad service", {"audience": 15230, "public": True}, Severity.urgent, "public exposure"),
    ("Bad service", {"audience": 250000}, Severity.major, "public exposure (audience 250000)"),
    ("Bad service", {"audience": 250000, "public": False}, Severity.general, "no severity signal"),
    ("Bad service", {"affected": 30}, Severity.urgent, "many customers affected (30)"),
    ("Bad service", {"affected": 300}, Severity.major, "many customers affected (300)"),
    ("Bad service", {"tier": "Gold"}, Severity.urgent, "VIP customer (tier gold)"),
    ("Bad service", {"tier": "basic"}, Severity.general, "no severity signal"),
    ("They charged me ¥8,000 for nothing", {}, Severity.urgent, "amount 8,000 CNY"),
    ("损失了6万元", {}, Severity.major, "amount 60,000 CNY"),
    ("I lost $12,500.00 on this", {}, Severity.major, "amount 12,500 USD"),
    ("I lost $120 on this", {}, Severity.general, "no severity signal"),
    ("Bad service", {"amount": 7000}, Severity.urgent, "amount 7,000 CNY"),
    ("Bad service", {"amount": 2000, "currency": "usd"}, Severity.urgent, "amount 2,000 USD"),
    ("The app is slow", {}, Severity.general, "no severity signal"),
    ("There was a fire and the app is happy", {}, Severity.major, "safety (fire)"),  # a whole word
    ("The fire alarm app is happy", {}, Severity.general, "no severity signal"),  # a fire alarm is no fire
    ("I feel fired up about the suedes", {}, Severity.general, "no severity signal"),  # no whole word
])
def test_severity_signals(text: str, details: dict[str, str | int | bool], severity: Severity,
                          signal: str) -> None:
    found, reasons = assess(complaint(text, **details), RULES.severity, repeat=False)
    assert found is severity
    assert len(reasons) == 1 and reasons[0].startswith(f"severity {severity.value}: ")
    assert signal in reasons[0]


def test_the_most_severe_signal_wins_and_every_signal_is_a_reason() -> None:
    severity, reasons = assess(complaint("起火了, I will sue, and ¥6000 lost", tier="vip"),
                               RULES.severity, repeat=True)
    assert severity is Severity.major
    for part in ("safety", "legal_action", "amount 6,000 CNY", "VIP", "repeat complaint"):
        assert part in reasons[0]


@pytest.mark.parametrize(("text", "found"), [
    ("¥1,200 and RMB 300", {"CNY": 1200}),
    ("3.5万元", {"CNY": 35000}),
    ("1200元 then 99元", {"CNY": 1200}),
    ("{$1200.00} and $5", {"USD": 1200}),
    ("300 dollars", {"USD": 300}),
    ("€40 or 50 euros", {"EUR": 50}),
    ("order 12345 on 2026-11-01", {}),
])
def test_amounts_in_text(text: str, found: dict[str, float]) -> None:
    assert amounts_in(text.lower()) == found


@pytest.mark.parametrize(("text", "code", "department", "review"), [
    ("The screen is broken and the hinge cracked, clearly a defect", "PQ-01", "quality", False),
    ("店员态度很差，还骂人", "SA-01", "service", False),
    ("Something unclear happened", "OT-00", "complaint_review", True),
])
def test_code_and_handling_department(text: str, code: str, department: str, review: bool) -> None:
    proposal = first_route(complaint(text), rules=RULES, taxonomy=TAXONOMY)
    d = proposal.decision
    assert (d.code, d.department, d.review) == (code, department, review)
    assert proposal.booking is not None and proposal.booking.department == department
    assert d.handler == HANDLER and HANDLER_REASON in d.reasons
    assert any(r.startswith(f"code {code}") for r in d.reasons)
    assert d.code_name_en and d.code_name_zh


@pytest.mark.parametrize(("text", "level", "notify"), [
    ("The screen is broken", Level.L1, []),
    ("Bad service, I will contact 12315", Level.L2, ["department_head"]),
    ("The charger caught fire", Level.L3, ["executives"]),  # major: executives at once
])
def test_level_by_severity_and_who_is_told_at_once(text: str, level: Level, notify: list[str]) -> None:
    d = first_route(complaint(text), rules=RULES, taxonomy=TAXONOMY).decision
    assert (d.level, d.notify, d.decision, d.revision) == (level, notify, DecisionKind.routed, 1)


def test_praise_is_recorded_without_booking_a_handler() -> None:
    proposal = first_route(complaint("Thank you, great service", nature=Nature.praise), rules=RULES,
                           taxonomy=TAXONOMY)
    assert proposal.booking is None and proposal.decision.handler is None


@pytest.mark.parametrize(("text", "prior", "owner", "severity", "repeat_of"), [
    ("The screen is broken", None, "store-sh-01", Severity.general, None),
    ("The screen is broken", PriorComplaint(complaint_id="261120-0000000009", owner="agent-3"),
     "agent-3", Severity.urgent, "261120-0000000009"),
    ("起火了", PriorComplaint(complaint_id="261120-0000000009", owner="agent-3"),
     "agent-3", Severity.major, "261120-0000000009"),  # a repeat never lowers severity
    ("The screen is broken", PriorComplaint(complaint_id="261123-0000000001", owner="agent-3"),
     "store-sh-01", Severity.general, None),  # its own anchor (a redelivery) is no repeat
])
def test_a_repeat_complaint_goes_back_to_the_first_contact_owner(
        text: str, prior: PriorComplaint | None, owner: str, severity: Severity,
        repeat_of: str | None) -> None:
    d = first_route(complaint(text, "store-sh-01"), rules=RULES, taxonomy=TAXONOMY, prior=prior).decision
    assert (d.first_contact_owner, d.severity, d.repeat_of) == (owner, severity, repeat_of)
    assert d.level == RULES.levels[severity]


def _routed(level: Level, **extra: object) -> RoutingDecision:
    base = first_route(complaint("The screen is broken"), rules=RULES, taxonomy=TAXONOMY).decision
    return base.model_copy(update={"level": level, "handler": "quality-l1-01", "department": "quality",
                                   "review": False, **extra})


@pytest.mark.parametrize(("level", "kind", "after", "notify"), [
    (Level.L1, DecisionKind.escalated, Level.L2, ["department_head"]),
    (Level.L2, DecisionKind.escalated, Level.L3, ["executives"]),
    (Level.L3, DecisionKind.at_ceiling, Level.L3, ["executives"]),  # the ceiling: notify only
])
def test_the_escalation_ladder(level: Level, kind: DecisionKind, after: Level, notify: list[str]) -> None:
    proposal = escalate(_routed(level), trigger="dissatisfied", why="customer dissatisfied", rules=RULES)
    d = proposal.decision
    assert (d.decision, d.level, d.notify, d.revision, d.trigger) == (kind, after, notify, 2, "dissatisfied")
    assert proposal.booking is not None and proposal.booking.level is after
    assert proposal.booking.keep is (kind is DecisionKind.at_ceiling)
    assert "customer dissatisfied" in d.reasons[0]
    assert d.severity is Severity.general and d.code == "PQ-01"  # the rest of the snapshot stays


def test_reclassification_moves_the_case_to_the_codes_department_at_its_level() -> None:
    current = _routed(Level.L2, review=True, department="complaint_review", code="OT-00")
    proposal = reclassify(current, code="PB-01", actor="reviewer-7", taxonomy=TAXONOMY)
    d = proposal.decision
    assert (d.decision, d.code, d.department, d.review, d.level) == (
        DecisionKind.reclassified, "PB-01", TAXONOMY.get("PB-01").department, False, Level.L2)
    assert proposal.booking is not None and proposal.booking.department == d.department
    assert not proposal.booking.keep
    assert "reviewer-7" in d.reasons[0]


def test_reclassification_within_the_department_keeps_the_handler() -> None:
    proposal = reclassify(_routed(Level.L1), code="PQ-02", actor="reviewer-7", taxonomy=TAXONOMY)
    assert proposal.booking is not None and proposal.booking.keep
    assert proposal.booking.department == "quality"


def test_an_unknown_code_is_rejected_with_the_field() -> None:
    with pytest.raises(Rejected, match="data.code: ZZ-99"):
        reclassify(_routed(Level.L1), code="ZZ-99", actor="reviewer-7", taxonomy=TAXONOMY)


# ---- what an input causes --------------------------------------------------------------

AT = datetime(2026, 11, 23, 2, tzinfo=UTC)
CID = "261123-0000000001"
ANSWER = CaseEvent.new(CaseUpdate(complaint_id=CID, action=CaseAction.satisfaction, actor="customer",
                                  score=1), id="answer-1", source="notifier", time=AT, subject=CID)


def lifecycle(action: CaseAction, *, cause: CaseEvent | None = None, **fields: Any) -> CaseEvent:
    update = CaseUpdate(complaint_id=CID, action=action, actor=fields.pop("actor", "customer"), **fields)
    return CaseEvent.new(update, id="E1", source="intake", time=AT, subject=CID, cause=cause)


@pytest.mark.parametrize(("event", "effect"), [
    # Given a resolution or a closure, then the handler's load is released once (per event id)
    (lifecycle(CaseAction.resolved, result="ok"), Release("E1")),
    (lifecycle(CaseAction.closed), Release("E1")),
    # Given a reviewer's code, then the case is re-routed to it
    (lifecycle(CaseAction.reclassified, code="PB-01", actor="reviewer-7"),
     Reclassify(("E1",), "PB-01", "reviewer-7")),
    # Given a satisfaction answer at or below the threshold (2 of 5), then it escalates
    (lifecycle(CaseAction.satisfaction, score=1),
     Escalate(("E1",), "dissatisfied", "customer dissatisfied (score 1 of 5)")),
    (lifecycle(CaseAction.satisfaction, score=2),
     Escalate(("E1",), "dissatisfied", "customer dissatisfied (score 2 of 5)")),
    # ... above it, nothing happens
    (lifecycle(CaseAction.satisfaction, score=3), Ignore("action_satisfaction")),
    (lifecycle(CaseAction.satisfaction, score=5), Ignore("action_satisfaction")),
    # Given a reopen caused by a dissatisfied answer, then the answer is a second trigger key,
    # so the answer and its reopen escalate once between them
    (lifecycle(CaseAction.reopened, cause=ANSWER),
     Escalate(("E1", "answer-1"), "reopened", "case reopened by customer")),
    (lifecycle(CaseAction.reopened, actor="agent-4"),
     Escalate(("E1",), "reopened", "case reopened by agent-4")),
    # Given any other step, then nothing, counted by its action
    (lifecycle(CaseAction.acknowledged, actor="agent-1"), Ignore("action_acknowledged")),
    (lifecycle(CaseAction.note, note="called back"), Ignore("action_note")),
    (lifecycle(CaseAction.plan_decided, note="replace it"), Ignore("action_plan_decided")),
    (lifecycle(CaseAction.awaiting_customer), Ignore("action_awaiting_customer")),
    (lifecycle(CaseAction.customer_replied), Ignore("action_customer_replied")),
])
def test_what_a_lifecycle_event_causes(event: CaseEvent, effect: Effect) -> None:
    # When the router reads it, Then it causes exactly this
    assert case_effect(event, satisfaction=POLICY.satisfaction) == effect


def sla(outcome: SlaOutcome, milestone: Milestone = Milestone.respond, *, cycle: int = 1,
        due_at: datetime | None = None) -> SlaEvent:
    alert = SlaAlert(complaint_id=CID, milestone=milestone, cycle=cycle, outcome=outcome,
                     severity=Severity.general, started_at=AT, deadline=AT + timedelta(hours=1),
                     due_at=due_at, observed_at=AT + timedelta(hours=1), on_time=None,
                     policy_version="t", notify=[])
    return SlaEvent.new(alert, id="S1", source="sla-monitor", time=AT, subject=CID)


@pytest.mark.parametrize(("event", "effect"), [
    # Given a breach of a milestone that escalates (respond, resolve), then it escalates once
    # per milestone and cycle: the alert's id and "sla:<milestone>:<cycle>" are its trigger keys
    (sla(SlaOutcome.breached), Escalate(("S1", "sla:respond:1"), "sla_breach:respond",
                                        "respond deadline 2026-11-23T03:00:00+00:00 breached")),
    # ... its due time, when the alert has one, is the one named
    (sla(SlaOutcome.breached, Milestone.resolve, cycle=2, due_at=AT + timedelta(hours=2)),
     Escalate(("S1", "sla:resolve:2"), "sla_breach:resolve",
              "resolve deadline 2026-11-23T04:00:00+00:00 breached")),
    # Given a breach of a milestone that does not escalate, then nothing
    (sla(SlaOutcome.breached, Milestone.acknowledge), Ignore("sla_breach_not_escalating")),
    (sla(SlaOutcome.breached, Milestone.revisit), Ignore("sla_breach_not_escalating")),
    # Given any other outcome, then nothing, counted by the outcome
    *[(sla(outcome), Ignore(f"sla_{outcome.value}")) for outcome in SlaOutcome
      if outcome is not SlaOutcome.breached],
])
def test_what_an_sla_alert_causes(event: SlaEvent, effect: Effect) -> None:
    assert sla_effect(event, rules=RULES) == effect


# ---- the booking rule --------------------------------------------------------------------

@pytest.mark.parametrize(("booking", "mode"), [
    (None, BookingMode.none),                             # praise: no handler
    (Booking("quality", Level.L2), BookingMode.book),      # escalation, first route
    (Booking("quality", Level.L3, keep=True), BookingMode.keep),  # ceiling, same-department code
])
def test_the_mode_a_proposal_commits_with(booking: Booking | None, mode: BookingMode) -> None:
    assert booking_mode(booking) is mode


@pytest.mark.parametrize(("mode", "held", "candidates", "loads", "booked"), [
    # Given mode none, then nothing changes, whatever the case holds
    (BookingMode.none, "a", [("b", 0)], {"a": 1}, Booked(Seat.untouched, "a", {"a": 1})),
    (BookingMode.none, None, [("b", 0)], {}, Booked(Seat.untouched, None, {})),
    # Given keep and a held handler, then it stays and no load moves
    (BookingMode.keep, "a", [("b", 0)], {"a": 1}, Booked(Seat.kept, "a", {"a": 1})),
    # Given keep and nothing held, then it books like book
    (BookingMode.keep, None, [("a", 0), ("b", 0)], {"a": 1},
     Booked(Seat.booked, "b", {"a": 1, "b": 1}, load=0)),
    # Given book, then the least loaded wins, the first listed among equals
    (BookingMode.book, None, [("a", 0), ("b", 0)], {}, Booked(Seat.booked, "a", {"a": 1})),
    (BookingMode.book, None, [("a", 0), ("b", 0), ("c", 0)], {"a": 3, "b": 1, "c": 1},
     Booked(Seat.booked, "b", {"a": 3, "b": 2, "c": 1}, load=1)),
    # ... after the held handler gave up its case (it may win again)
    (BookingMode.book, "a", [("a", 0), ("b", 0)], {"a": 1}, Booked(Seat.booked, "a", {"a": 1})),
    (BookingMode.book, "a", [("b", 0)], {"a": 2}, Booked(Seat.booked, "b", {"a": 1, "b": 1})),
    # Given capacities, then a handler at its capacity is passed over; 0 means unlimited
    (BookingMode.book, None, [("a", 2), ("b", 3)], {"a": 2, "b": 2},
     Booked(Seat.booked, "b", {"a": 2, "b": 3}, load=2)),
    (BookingMode.book, None, [("a", 0)], {"a": 100}, Booked(Seat.booked, "a", {"a": 101}, load=100)),
    # Given nobody with room, then nobody is booked and the held handler is still released
    (BookingMode.book, None, [("a", 2), ("b", 2)], {"a": 2, "b": 2},
     Booked(Seat.unassigned, None, {"a": 2, "b": 2})),
    (BookingMode.book, "a", [], {"a": 1}, Booked(Seat.unassigned, None, {})),
    # Given a held handler whose load is gone (lost keys), then no load falls below zero
    (BookingMode.book, "x", [], {}, Booked(Seat.unassigned, None, {})),
])
def test_the_booking_rule(mode: BookingMode, held: str | None, candidates: list[tuple[str, int]],
                          loads: dict[str, int], booked: Booked) -> None:
    # When a decision commits in this mode, Then this is booked and these are the loads after
    assert book(mode, held=held, candidates=candidates, loads=loads) == booked


TEMPLATE = f'{{"handler":"{HANDLER}","reasons":["level L1","{HANDLER_REASON}"]}}'


@pytest.mark.parametrize(("booked", "event"), [
    (Booked(Seat.untouched, None, {}), TEMPLATE),
    (Booked(Seat.kept, "a", {"a": 1}), '{"handler":"a","reasons":["level L1","handler a: keeps the case"]}'),
    (Booked(Seat.booked, "b", {"b": 3}, load=2),
     '{"handler":"b","reasons":["level L1","handler b: least loaded (2 open)"]}'),
    (Booked(Seat.unassigned, None, {}), '{"handler":null,"reasons":["level L1","waiting"]}'),
])
def test_the_booked_handler_and_its_reason_fill_the_decision(booked: Booked, event: str) -> None:
    # Given a proposed decision with tokens, When a booking fills it, Then it reads this
    assert fill(TEMPLATE, booked, assigned_reason="handler %s: least loaded (%d open)",
                unassigned_reason="waiting") == event


@pytest.mark.parametrize(("applied", "known", "held", "loads", "status", "after"), [
    # Given a resolution already applied (a redelivery, or closed after resolved), nothing moves
    (True, True, "a", {"a": 1}, "duplicate", {"a": 1}),
    # Given no routing state for the case, nothing moves
    (False, False, None, {"a": 1}, "unknown", {"a": 1}),
    # Given a case holding a handler, its load goes down by one (and away at zero)
    (False, True, "a", {"a": 2}, "released", {"a": 1}),
    (False, True, "a", {"a": 1, "b": 4}, "released", {"b": 4}),
    # Given a case holding none (released before, or nobody had room), nothing moves
    (False, True, None, {"a": 1}, "released", {"a": 1}),
])
def test_the_release_rule(applied: bool, known: bool, held: str | None, loads: dict[str, int],
                          status: ReleaseStatus, after: dict[str, int]) -> None:
    assert release(applied=applied, known=known, held=held, loads=loads) == (status, after)


# ---- roster ---------------------------------------------------------------------------

SH = 8  # Asia/Shanghai = UTC+8, no DST


@pytest.mark.parametrize(("span", "weekday", "hour", "covered"), [
    ("mon-fri 09:00-18:00", 0, 9, True),
    ("mon-fri 09:00-18:00", 0, 18, False),
    ("mon-fri 09:00-18:00", 5, 10, False),
    ("mon-sun 20:00-08:00", 2, 23, True),
    ("mon-sun 20:00-08:00", 3, 7, True),   # the morning after
    ("fri 20:00-08:00", 5, 7, True),       # Saturday morning after Friday night
    ("fri 20:00-08:00", 4, 7, False),      # Friday morning belongs to Thursday's night
    ("sat,sun 00:00-24:00", 6, 23, True),
    ("fri-mon 10:00-11:00", 0, 10, True),  # a range across the week's end
    ("fri-mon 10:00-11:00", 2, 10, False),
])
def test_shift_spans(span: str, weekday: int, hour: int, covered: bool) -> None:
    assert Span.parse(span).covers(weekday, hour * 60) is covered


def test_on_duty_handlers_follow_shifts_in_the_rosters_time_zone() -> None:
    roster = load_roster()
    monday_10_shanghai = datetime(2026, 11, 23, 10 - SH, tzinfo=UTC)
    monday_23_shanghai = datetime(2026, 11, 23, 23 - SH, tzinfo=UTC)
    day = [h.id for h in roster.on_duty("quality", Level.L1, monday_10_shanghai)]
    night = [h.id for h in roster.on_duty("quality", Level.L1, monday_23_shanghai)]
    assert day == ["quality-l1-01", "quality-l1-02"] and night == ["quality-l1-03"]
    assert [h.id for h in roster.on_duty("quality", Level.L2, monday_23_shanghai)] == ["quality-l2-02"]


@pytest.mark.parametrize(("body", "problem"), [
    ("timezone: Mars/Olympus", "timezone: Value error, unknown time zone"),
    ("shifts: {day: ['mon-xyz 09:00-18:00']}", "unknown day"),
    ("shifts: {day: ['mon 25:00-26:00']}", "not a time of day"),
    ("departments: {quality: [{id: a, level: L1, shift: evening}]}", "unknown shift 'evening'"),
    ("departments: {quality: [{id: Alice Smith, level: L1, shift: day}]}", "departments.quality.0.id"),
])
def test_a_bad_roster_names_file_field_and_problem(tmp_path: Path, body: str, problem: str) -> None:
    base = {"version": "'t'", "timezone": "Asia/Shanghai", "shifts": "{day: ['mon-sun 00:00-24:00']}",
            "departments": "{quality: [{id: q1, level: L1, shift: day}]}"}
    key = body.split(":", 1)[0]
    base[key] = body.split(":", 1)[1].strip()
    path = tmp_path / "roster.yaml"
    path.write_text("\n".join(f"{k}: {v}" for k, v in base.items()))
    with pytest.raises(ConfigError) as err:
        load_roster(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_every_department_of_the_taxonomy_must_be_staffed_at_every_level(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text("version: t\ntimezone: UTC\nshifts: {all: ['mon-sun 00:00-24:00']}\n"
                    "departments: {quality: [{id: q1, level: L1, shift: all}]}\n")
    with pytest.raises(ConfigError) as err:
        load_roster(path, departments={"quality", "billing"})
    assert f"{path}: departments.billing: missing" in str(err.value)
    assert f"{path}: departments.quality: no handler at L2, L3" in str(err.value)


def test_the_shipped_roster_staffs_every_department_of_the_shipped_taxonomy() -> None:
    departments = {t.department for t in TAXONOMY.types} | {RULES.review_department}
    assert load_roster(departments=departments).gaps(departments) == []


@pytest.mark.parametrize(("channel", "payload", "severity", "signal"), [
    (Channel.web_form, {"description": "The blender is broken", "amount": 60000, "currency": "cny"},
     Severity.major, "amount 60,000 CNY"),
    (Channel.store, {"store_id": "s1", "description": "店员态度差", "customer_tier": "VIP"},
     Severity.urgent, "VIP customer (tier vip)"),
    (Channel.partner, {"reporter": "regulator-desk", "description": "Many reports of the same fault",
                       "affected_customers": 250}, Severity.major, "many customers affected (250)"),
    (Channel.phone, {"transcript": "The kettle is broken", "amount": 20, "currency": "USD"},
     Severity.general, "no severity signal"),
])
def test_channel_signals_reach_the_severity_rules(channel: Channel, payload: dict[str, object],
                                                  severity: Severity, signal: str) -> None:
    from services.intake import channels
    from services.intake.logic import normalise

    msg = channels.parse(channel, payload)
    c = normalise(channel, msg, complaint_id="X", dedupe="m", received_at=datetime(2026, 11, 23, tzinfo=UTC),
                  rules=POLICY.intake, desks=RULES.channel_desks, identity_secret=b"k" * 16)
    found, reasons = assess(c, RULES.severity, repeat=False)
    assert found is severity and signal in reasons[0]
