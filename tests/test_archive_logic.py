"""The archive's pure rules: summaries without personal data, and the folds of a case's events.

``Story`` builds one complaint's events the way the services publish them; the other archive
test modules reuse it (``closed_story``, ``reopened_story``, ``open_story``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

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
    DecisionKind,
    Level,
    Milestone,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
    RoutingDecision,
    Severity,
    SlaAlert,
    SlaEvent,
    SlaOutcome,
)
from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA, TopicSpec
from services.archive import logic
from services.archive.records import ArchivedEvent, mask, parse, scrub, summarise
from services.common import sealing
from services.common.errors import Rejected

START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
NAME, PHONE, EMAIL = "张伟", "+8613800138000", "zhang.wei@example.com"
SUBJECT = "屏幕碎裂，要求换货"
DESCRIPTION = "我在门店买的手机第二天屏幕就裂了，店员态度很差，我要求换一台新的 order-77812"
CUSTOMER_NOTE = "换了新机，满意，谢谢小王"
PERSONAL = (NAME, PHONE, EMAIL, SUBJECT, DESCRIPTION, CUSTOMER_NOTE, "13800138000")


class Story:
    """One complaint's events, built in the order they happen (``minute`` after ``start``)."""

    def __init__(self, complaint_id: str, start: datetime = START) -> None:
        self.cid, self.start = complaint_id, start
        self.events: list[tuple[TopicSpec, Envelope]] = []
        self.registered: ComplaintRegistered | None = None

    def _add(self, spec: TopicSpec, cls: type[Envelope], data: Any, minute: float, source: str) -> None:
        event = cls.new(data, id=derived_id("archive-test", self.cid, str(len(self.events))),
                        source=source, time=self.at(minute), subject=self.cid, cause=self.registered)
        self.events.append((spec, event))

    def at(self, minute: float) -> datetime:
        return self.start + timedelta(minutes=minute)

    def register(self, minute: float = 0) -> Story:
        complaint = Complaint(
            complaint_id=self.cid, channel=Channel.web_form, received_at=self.at(minute),
            source_message_id=f"web_form:id:{self.cid}",
            customer=Contact(name=NAME, phone=PHONE, email=EMAIL), customer_key="k" * 32,
            first_contact="web-desk", subject=SUBJECT, description=DESCRIPTION, product="X200",
            store_id="SH-01", order_id="order-77812")
        self.registered = ComplaintRegistered.new(
            complaint, id=derived_id("archive-test", self.cid, "registered"), source="intake",
            time=self.at(minute), subject=self.cid)
        self.events.append((REGISTERED, self.registered))
        return self

    def route(self, minute: float, revision: int, *, decision: DecisionKind = DecisionKind.routed,
              level: Level = Level.L1, handler: str = "quality-l1-01", trigger: str | None = None) -> Story:
        data = RoutingDecision(
            complaint_id=self.cid, decision=decision, revision=revision, received_at=self.start,
            code="PQ-01", code_name_zh="产品质量", code_name_en="Product quality", severity=Severity.urgent,
            department="quality", level=level, handler=handler, first_contact_owner="web-desk",
            trigger=trigger, reasons=[f"level {level.value}"])
        self._add(ROUTED, ComplaintRouted, data, minute, "router")
        return self

    def case(self, minute: float, action: CaseAction, *, actor: str = "quality-l1-01",
             **fields: Any) -> Story:
        self._add(LIFECYCLE, CaseEvent, CaseUpdate(complaint_id=self.cid, action=action, actor=actor,
                                                   **fields), minute, "intake")
        return self

    def sla(self, minute: float, milestone: Milestone, outcome: SlaOutcome, *, cycle: int = 1,
            started: float = 0, limit: float = 60, on_time: bool | None = None,
            threshold: float | None = None) -> Story:
        paused = outcome is SlaOutcome.paused
        alert = SlaAlert(
            complaint_id=self.cid, milestone=milestone, cycle=cycle, outcome=outcome,
            threshold=threshold, severity=Severity.urgent, started_at=self.at(started),
            deadline=None if paused else self.at(started + limit), observed_at=self.at(minute),
            on_time=on_time, policy_version="policy-2026.1", notify=["owner"])
        self._add(SLA, SlaEvent, alert, minute, "sla-monitor")
        return self

    def notify(self, minute: float, nid: str, kind: NotificationKind, status: str, *, attempt: int = 0,
               role: str = "customer") -> Story:
        record = NotificationRecord(
            notification_id=f"{self.cid}-{nid}", complaint_id=self.cid, kind=kind,
            transport="sms-gateway:sms" if role == "customer" else "outbox:chat", role=role,
            recipient=mask(PHONE) if role == "customer" else "#quality", language="zh",
            status=status, attempt=attempt)  # type: ignore[arg-type]
        self._add(NOTIFICATIONS, NotificationEvent, record, minute, "notifier")
        return self

    def archived(self) -> list[ArchivedEvent]:
        return [summarise(e) for _, e in self.events]


def closed_story(cid: str, start: datetime = START) -> Story:
    """Registered, routed, acknowledgement breached and escalated, resolved, satisfied, closed."""
    return (Story(cid, start).register(0).route(1, 1)
            .sla(2, Milestone.acknowledge, SlaOutcome.started)
            .notify(2, "ack", NotificationKind.acknowledgement, "queued")
            .notify(3, "ack", NotificationKind.acknowledgement, "sent", attempt=1)
            .notify(3, "assign", NotificationKind.assignment, "sent", attempt=1, role="handler")
            .sla(31, Milestone.acknowledge, SlaOutcome.warning, threshold=0.5)
            .sla(61, Milestone.acknowledge, SlaOutcome.breached)
            .route(62, 2, decision=DecisionKind.escalated, level=Level.L2, handler="quality-l2-01",
                   trigger="sla_breach:acknowledge")
            .case(65, CaseAction.acknowledged)
            .sla(65, Milestone.acknowledge, SlaOutcome.met, on_time=False)
            .sla(65, Milestone.plan, SlaOutcome.started, started=65, limit=1440)
            .case(120, CaseAction.note, note=f"called the customer back on {PHONE[3:]}")
            .case(180, CaseAction.plan_decided)
            .sla(180, Milestone.plan, SlaOutcome.met, started=65, limit=1440, on_time=True)
            .case(1200, CaseAction.resolved, result=f"replaced the unit; mail {EMAIL} if it fails")
            .notify(1201, "result", NotificationKind.result, "sent", attempt=1)
            .case(1800, CaseAction.satisfaction, actor="customer", score=5, note=CUSTOMER_NOTE)
            .case(1860, CaseAction.closed))


def reopened_story(cid: str, start: datetime = START) -> Story:
    """Resolved, a dissatisfied answer reopens it (escalated), resolved again, closed."""
    return (Story(cid, start).register(0).route(1, 1)
            .sla(2, Milestone.resolve, SlaOutcome.started, limit=4320)
            .case(10, CaseAction.acknowledged)
            .case(600, CaseAction.resolved, result="refunded")
            .sla(600, Milestone.resolve, SlaOutcome.met, limit=4320, on_time=True)
            .case(900, CaseAction.satisfaction, actor="customer", score=2)
            .case(901, CaseAction.reopened, actor="customer", note="dissatisfied: score 2 of 5")
            .route(902, 2, decision=DecisionKind.escalated, level=Level.L2, trigger="dissatisfied")
            .notify(903, "retry", NotificationKind.reopened, "queued")
            .notify(904, "retry", NotificationKind.reopened, "retrying", attempt=1)
            .notify(910, "retry", NotificationKind.reopened, "failed", attempt=3)
            .sla(902, Milestone.resolve, SlaOutcome.started, cycle=2, started=902, limit=4320)
            .case(1500, CaseAction.resolved, result="refunded twice the price")
            .sla(1500, Milestone.resolve, SlaOutcome.met, cycle=2, started=902, limit=4320, on_time=True)
            .case(1600, CaseAction.satisfaction, actor="customer", score=4)
            .case(1700, CaseAction.closed))


def open_story(cid: str, start: datetime = START) -> Story:
    """Acknowledged, then waiting on the customer: the plan clock paused."""
    return (Story(cid, start).register(0).route(1, 1)
            .case(20, CaseAction.acknowledged)
            .sla(20, Milestone.plan, SlaOutcome.started, started=20, limit=1440)
            .case(30, CaseAction.awaiting_customer)
            .sla(30, Milestone.plan, SlaOutcome.paused, started=20))


def rows_of(events: list[ArchivedEvent]) -> tuple[Any, ...]:
    case, clocks, notes = logic.fold(events)
    return case, tuple(clocks), tuple(notes)


# ---- the edge: parsing and privacy -------------------------------------------------------


def test_a_registration_is_archived_without_personal_data() -> None:
    # Given a registered complaint with a name, phone, e-mail and the customer's own words
    story = closed_story("C1")
    # When it is summarised for the archive
    archived = summarise(story.events[0][1])
    text = json.dumps(archived.summary, ensure_ascii=False)
    # Then none of them is kept, only the keyed identity, masked contact and lengths
    for secret in PERSONAL:
        assert secret not in text
    assert archived.summary["contact_masked"] == {"phone": "+86*******8000", "email": "z***@example.com"}
    assert archived.summary["customer_key"] == "k" * 32
    assert archived.summary["description_chars"] == len(DESCRIPTION)
    assert (archived.actor, archived.action, archived.topic) == ("intake", "registered", REGISTERED.name)


OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@pytest.mark.parametrize(("given", "shown"), [
    (Contact(language="zh"), "wechat:***"),  # a WeChat message: the openid alone
    (Contact(name=NAME, language="zh"), "wechat:***"),
    (Contact(phone=PHONE, email=EMAIL), "+86*******8000, z***@example.com, wechat:***"),
])
def test_a_wechat_customers_sealed_openid_shows_as_a_wechat_marker_never_in_clear(
        given: Contact, shown: str) -> None:
    # Given a WeChat registration whose contact intake sealed with the sender's openid
    masters = sealing.MasterKeys.parse(sealing.generate_master_keys("k1"))
    record, dek = sealing.new_data_key(masters, "w" * 32, now=START)
    contact = sealing.seal_contact(given, subject="w" * 32, kid=record.kid, dek=dek, account=OPENID)
    complaint = Complaint(
        complaint_id="C-WX", channel=Channel.wechat, received_at=START, source_message_id="wechat:id:1",
        customer=contact, customer_key="w" * 32, first_contact="wechat-desk", subject="屏幕坏了",
        description="屏幕坏了没人管")
    registered = ComplaintRegistered.new(complaint, source="intake", time=START, subject="C-WX")
    # When the archive summarises it, folds the case row and tells its history
    archived = summarise(registered)
    case = logic.fold_case([archived])
    en, zh = logic.history_lines([archived], lang="en"), logic.history_lines([archived], lang="zh")
    # Then the masked contact says the customer is reachable by WeChat, beside any phone or e-mail
    assert archived.summary["contact_masked"]["wechat"] == "wechat:***"
    assert case.contact_masked == shown
    assert en[0].endswith(f"contact {shown}") and zh[0].endswith(f"联系方式 {shown}")
    # And no part of the openid is kept in clear: not in the trail, the row, the history
    kept = json.dumps(archived.summary, ensure_ascii=False) + repr(case) + "".join(en + zh)
    for secret in (OPENID, OPENID.lower(), OPENID[-4:], NAME, PHONE, EMAIL):
        assert secret not in kept


@pytest.mark.parametrize(("actor", "note", "kept"), [
    ("customer", CUSTOMER_NOTE, {"note_chars": len(CUSTOMER_NOTE)}),
    ("quality-l1-01", f"called {PHONE}", {"note": "called +86*******8000"}),
    ("quality-l1-01", f"mailed {EMAIL} twice", {"note": "mailed z***@example.com twice"}),
    ("quality-l1-01", "order 2026 swapped", {"note": "order 2026 swapped"}),
])
def test_case_notes_keep_staff_words_masked_and_only_the_length_of_the_customers(
        actor: str, note: str, kept: dict[str, Any]) -> None:
    # Given a case event with a note by a customer or by staff
    event = CaseEvent.new(CaseUpdate(complaint_id="C1", action=CaseAction.note, actor=actor, note=note),
                          source="intake", time=START, subject="C1")
    # When it is summarised, then the note is kept as the table says
    summary = summarise(event).summary
    assert {k: summary[k] for k in kept} == kept
    assert summary.get("note" if "note_chars" in kept else "note_chars") is None


@pytest.mark.parametrize(("text", "scrubbed"), [
    ("call 13800138000 now", "call 138****8000 now"),
    ("call +86 138-0013-8000", "call +86*******8000"),
    ("a@b.cn or x.y@example.com", "a***@b.cn or x***@example.com"),
    ("refund 1200 yuan on 2026-11-23", "refund 1200 yuan on 2026-11-23"),
    (None, None),
])
def test_scrub_masks_contact_data_in_free_text(text: str | None, scrubbed: str | None) -> None:
    assert scrub(text) == scrubbed


def test_parse_takes_each_type_by_its_model_and_rejects_the_rest() -> None:
    # Given events of every input type
    story = closed_story("C1")
    # Then each parses back to its own model, on its own topic
    for spec, event in story.events:
        assert parse(event.to_bytes(), topic=spec.name) == event
    # And an event on a topic that does not carry its type is rejected
    with pytest.raises(Rejected):
        parse(story.events[0][1].to_bytes(), topic=LIFECYCLE.name)
    # And unknown types and malformed JSON are bad input
    with pytest.raises(ValidationError):
        parse(b'{"type": "inbound.received"}')
    with pytest.raises(ValidationError):
        parse(b"not json")


# ---- the folds ----------------------------------------------------------------------------


def test_a_closed_case_folds_into_its_record() -> None:
    # Given the events of a case escalated after a missed acknowledgement, resolved and closed
    story = closed_story("C1")
    # When they are folded
    case = logic.fold_case(story.archived())
    # Then the row holds its state, milestone times, routing and outcome
    assert case.status == "closed"
    assert (case.channel, case.nature, case.customer_key) == ("web_form", "complaint", "k" * 32)
    assert case.contact_masked == "+86*******8000, z***@example.com"
    assert (case.product, case.store_id, case.first_contact_owner) == ("X200", "SH-01", "web-desk")
    assert (case.code, case.code_name_en, case.department, case.severity) == (
        "PQ-01", "Product quality", "quality", "urgent")
    assert (case.level, case.highest_level, case.handler, case.routed_revision) == (
        "L2", "L2", "quality-l2-01", 2)
    assert (case.escalation_count, case.reopen_count) == (1, 0)
    assert case.received_at == case.registered_at == START
    assert case.acknowledged_at == story.at(65)
    assert case.plan_decided_at == story.at(180)
    assert case.resolved_at == story.at(1200)
    assert case.closed_at == case.last_event_time == story.at(1860)
    assert case.result == "replaced the unit; mail z***@example.com if it fails"
    assert (case.satisfaction_score, case.satisfaction_at) == (5, story.at(1800))
    assert case.policy_version == "policy-2026.1"
    assert case.event_count == len(story.events)


def test_a_reopened_case_counts_its_reopen_and_keeps_the_latest_answer() -> None:
    story = reopened_story("C2")
    case, clocks, notes = logic.fold(story.archived())
    assert (case.status, case.reopen_count, case.escalation_count) == ("closed", 1, 1)
    assert (case.result, case.resolved_at) == ("refunded twice the price", story.at(1500))
    assert (case.satisfaction_score, case.satisfaction_at) == (4, story.at(1600))
    # and the resolve clock has one row per cycle
    assert [(c.milestone, c.cycle, c.outcome, c.on_time) for c in clocks] == [
        ("resolve", 1, "met", True), ("resolve", 2, "met", True)]
    assert [(n.kind, n.status, n.attempts) for n in notes] == [("reopened", "failed", 3)]


def test_events_before_the_registration_still_make_a_row() -> None:
    # Given only a routing decision and an SLA start (the registration has not come yet)
    story = closed_story("C3")
    early = [e for e in story.archived() if e.type in ("complaint.routed", "sla.alert")][:2]
    # When folded, then the row has what they say and nothing invented
    case = logic.fold_case(early)
    assert (case.status, case.code, case.first_contact_owner, case.channel) == (
        "open", "PQ-01", "web-desk", None)
    assert case.received_at == START


@pytest.mark.parametrize(("actions", "status"), [
    ([], "open"),
    ([CaseAction.acknowledged], "open"),
    ([CaseAction.acknowledged, CaseAction.awaiting_customer], "awaiting_customer"),
    ([CaseAction.awaiting_customer, CaseAction.customer_replied], "open"),
    ([CaseAction.resolved], "resolved"),
    ([CaseAction.resolved, CaseAction.reopened], "reopened"),
    ([CaseAction.resolved, CaseAction.closed], "closed"),
    ([CaseAction.closed, CaseAction.note, CaseAction.satisfaction], "closed"),
    ([CaseAction.resolved, CaseAction.reclassified], "resolved"),
])
def test_the_status_is_the_last_word_of_the_actions_that_set_one(actions: list[CaseAction],
                                                                  status: str) -> None:
    story = Story("C4").register(0).route(1, 1)
    extra = {CaseAction.resolved: {"result": "done"}, CaseAction.satisfaction: {"score": 3},
             CaseAction.reclassified: {"code": "SV-01"}}
    for i, action in enumerate(actions):
        story.case(10 + i, action, **extra.get(action, {}))
    assert logic.fold_case(story.archived()).status == status


def test_the_highest_revision_decides_routing_even_when_its_clock_is_behind() -> None:
    # Given an escalation (revision 2) stamped a minute before the first decision (clock skew)
    story = (Story("C5").register(0).route(5, 1)
             .route(4, 2, decision=DecisionKind.escalated, level=Level.L2, handler="h2"))
    # When folded, then revision 2 is the routing state
    case = logic.fold_case(story.archived())
    assert (case.routed_revision, case.level, case.handler) == (2, "L2", "h2")


@pytest.mark.parametrize(("outcomes", "outcome", "on_time", "warnings"), [
    ([SlaOutcome.started], "open", None, 0),
    ([SlaOutcome.started, SlaOutcome.warning, SlaOutcome.warning], "open", None, 2),
    ([SlaOutcome.started, SlaOutcome.met], "met", True, 0),
    ([SlaOutcome.started, SlaOutcome.breached], "breached", False, 0),
    ([SlaOutcome.started, SlaOutcome.breached, SlaOutcome.met], "met", False, 0),
    ([SlaOutcome.started, SlaOutcome.cancelled], "cancelled", None, 0),
    ([SlaOutcome.started, SlaOutcome.breached, SlaOutcome.cancelled], "breached", False, 0),
    ([SlaOutcome.started, SlaOutcome.paused, SlaOutcome.resumed], "open", None, 0),
])
def test_a_milestone_ends_met_breached_cancelled_or_open(
        outcomes: list[SlaOutcome], outcome: str, on_time: bool | None, warnings: int) -> None:
    story = Story("C6")
    for i, o in enumerate(outcomes):
        met_on_time = (SlaOutcome.breached not in outcomes) if o is SlaOutcome.met else None
        story.sla(10 * i, Milestone.resolve, o, on_time=met_on_time,
                  threshold=0.5 + 0.1 * i if o is SlaOutcome.warning else None)
    (row,) = logic.fold_sla(story.archived())
    assert (row.outcome, row.on_time, row.warnings) == (outcome, on_time, warnings)
    assert row.started_at == START


@pytest.mark.parametrize(("steps", "status", "attempts"), [
    (["queued"], "queued", 0),
    (["queued", "deferred"], "deferred", 1),
    (["queued", "sent"], "sent", 1),
    (["queued", "retrying", "failed"], "failed", 2),
    (["queued", "sent", "retrying"], "sent", 2),  # a final step stands
    (["queued", "in_doubt"], "in_doubt", 1),
])
def test_a_notification_keeps_its_final_status(steps: list[str], status: str, attempts: int) -> None:
    story = Story("C7")
    for i, step in enumerate(steps):
        story.notify(i, "n1", NotificationKind.result, step, attempt=min(i, 2))
    (row,) = logic.fold_notifications(story.archived())
    assert (row.status, row.attempts, row.queued_at) == (status, attempts, START)
    assert row.sent_at == (story.at(steps.index("sent")) if "sent" in steps else None)


@pytest.mark.parametrize(("now", "years", "cutoff"), [
    (datetime(2036, 5, 1, 12, tzinfo=UTC), 10, datetime(2026, 5, 1, 12, tzinfo=UTC)),
    (datetime(2028, 2, 29, tzinfo=UTC), 1, datetime(2027, 2, 28, tzinfo=UTC)),
    (datetime(2028, 2, 29, tzinfo=UTC), 4, datetime(2024, 2, 29, tzinfo=UTC)),
])
def test_retention_cutoff_counts_calendar_years(now: datetime, years: int, cutoff: datetime) -> None:
    assert logic.retention_cutoff(now, years=years) == cutoff


def test_history_lines_tell_the_trail_in_both_languages() -> None:
    # Given a closed case's trail
    story = closed_story("C8")
    trail = story.archived()
    assert story.registered is not None
    # When told in English and Chinese
    en, zh = logic.history_lines(trail, lang="en"), logic.history_lines(trail, lang="zh")
    # Then one line per event, in order, with who did what and why
    assert len(en) == len(zh) == len(trail)
    assert en[0].startswith("2026-11-23 01:00:00 UTC  intake  registered: channel web_form")
    (escalated,) = [line for line in en if "escalated (revision 2): PQ-01 Product quality" in line]
    assert escalated.startswith("2026-11-23 02:02:00 UTC  router  ")
    assert escalated.endswith(", handler quality-l2-01, trigger sla_breach:acknowledge "
                               f"(cause {story.registered.id[:8]})")
    assert any("升级（第 2 版）：PQ-01 产品质量，部门 quality" in line for line in zh)
    assert any("SLA acknowledge (cycle 1) met, late" in line for line in en)
    assert any("quality-l1-01  resolved, result: replaced the unit" in line for line in en)
    assert any("customer  满意度回访，5/5，客户留言" in line for line in zh)
    for line in en + zh:
        for secret in PERSONAL:
            assert secret not in line


def test_history_lines_give_deadlines_in_the_zone_of_the_lines() -> None:
    # Given a trail whose acknowledge clock started at 01:02 UTC with a deadline at 02:02 UTC
    trail = closed_story("C9").archived()
    # When told in Shanghai time
    lines = logic.history_lines(trail, lang="en", tz=ZoneInfo("Asia/Shanghai"))
    # Then the line and its deadline are both local (+0800), never UTC beside local
    (started,) = [line for line in lines if "SLA acknowledge (cycle 1) started" in line]
    assert started.startswith("2026-11-23 09:02:00 +0800")
    assert ", deadline 2026-11-23 10:00:00 +0800 (cause " in started
    assert "UTC" not in "".join(lines)


# ---- any order, any repetition ------------------------------------------------------------

STORIES = [closed_story("P1"), reopened_story("P2"), open_story("P3")]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), which=st.sampled_from(STORIES))
def test_any_order_and_any_repetition_of_a_cases_events_gives_the_same_rows(
        data: st.DataObject, which: Story) -> None:
    # Given a case's events, folded in the order they happened
    events = which.archived()
    expected = rows_of(events)
    # When they arrive in any order, some of them more than once
    shuffled = data.draw(st.permutations(events))
    again = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    # Then the rows are the same
    assert rows_of([*shuffled, *again]) == expected
