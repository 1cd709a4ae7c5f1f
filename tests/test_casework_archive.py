"""The archive and the work on a case: the new facts folded into the case row and kept in the
audit trail, without personal data."""

from __future__ import annotations

import json
import random
from decimal import Decimal

from schemas.events import (
    CaseAction,
    CoHandler,
    ComplaintRouted,
    DecisionKind,
    Level,
    RoutingDecision,
    Severity,
)
from schemas.topics import ROUTED
from services.archive import logic
from tests.test_archive_logic import EMAIL, PERSONAL, PHONE, Story

OUTCOME = {"solution": "compensation", "compensation": {"amount": "800", "currency": "CNY"},
           "party_at_fault": "third_party", "root_cause": "PQ-02", "template": "compensated",
           "fields": {"amount": "¥800"}}


def decide(story: Story, minute: float, revision: int, kind: DecisionKind, *, department: str,
           handler: str | None, co: list[CoHandler] | None = None) -> Story:
    data = RoutingDecision(
        complaint_id=story.cid, decision=kind, revision=revision, received_at=story.start, code="PQ-01",
        severity=Severity.urgent, department=department, level=Level.L1, handler=handler,
        first_contact_owner="web-desk", trigger=kind.value, co_handlers=co or [], reasons=[kind.value])
    story._add(ROUTED, ComplaintRouted, data, minute, "router")
    return story


def worked_story(cid: str) -> Story:
    """Transferred to billing, a quality co-handler, a plan, a proposal approved, resolved, contacted."""
    s = Story(cid).register(0).route(1, 1)
    s.case(30, CaseAction.transferred, actor="supervisor-01",
           assignment={"department": "billing", "reason": f"billing dispute, customer on {PHONE}"})
    decide(s, 31, 2, DecisionKind.transferred, department="billing", handler="billing-l1-01")
    s.case(40, CaseAction.co_handler_added, actor="billing-l1-01",
           assignment={"handler": "quality-l1-02", "department": "quality", "reason": "check the unit"})
    decide(s, 41, 3, DecisionKind.co_handler_added, department="billing", handler="billing-l1-01",
           co=[CoHandler(handler="quality-l1-02", department="quality")])
    s.case(60, CaseAction.plan_decided, actor="billing-l1-01", plan={"summary": "refund and check", "measures": [
        {"description": "inspect the batch", "owner": "quality-l1-02", "due": "2026-11-30"},
        {"description": f"call back {PHONE}", "owner": "billing-l1-01", "due": "2026-11-24"}]})
    s.case(100, CaseAction.resolution_proposed, actor="billing-l1-01", outcome=OUTCOME)
    s.case(120, CaseAction.approved, actor="billing-head",
           approval={"proposal_event_id": "p-1", "requester": "billing-l1-01"})
    s.case(130, CaseAction.resolved, actor="billing-l1-01", result="compensated",
           outcome={**OUTCOME, "approved_by": "billing-head"})
    s.case(200, CaseAction.contacted, actor="billing-l1-01",
           contact={"kind": "phone_callback", "purpose": "feedback", "reached": True})
    s.case(300, CaseAction.contacted, actor="billing-l1-01",
           contact={"kind": "visit", "purpose": "revisit", "reached": True, "score": 4})
    return s


def test_the_work_on_a_case_folds_into_its_row() -> None:
    # Given a case transferred, co-handled, planned, proposed, approved, resolved and revisited
    story = worked_story("W1")
    # When its events are folded
    case = logic.fold_case(story.archived())
    # Then the row holds who handles it now and the structured work
    assert (case.department, case.handler, case.routed_revision) == ("billing", "billing-l1-01", 3)
    assert case.co_handlers == "quality-l1-02@quality"
    assert case.plan_measures == 2
    assert (case.solution, case.party_at_fault, case.root_cause) == ("compensation", "third_party", "PQ-02")
    assert (case.compensation_amount, case.compensation_currency) == (Decimal("800.00"), "CNY")
    assert case.approved_by == "billing-head"
    assert (case.last_contact_at, case.last_contact_kind, case.last_contact_purpose,
            case.last_contact_reached) == (story.at(300), "visit", "revisit", True)
    assert (case.satisfaction_score, case.satisfaction_at) == (4, story.at(300))  # the revisit's answer
    assert (case.status, case.resolved_at, case.result) == ("resolved", story.at(130), "compensated")


def test_a_reopen_clears_the_approval_of_the_failed_resolution() -> None:
    # Given the worked case reopened, and a new resolution proposed without compensation
    story = worked_story("W2").case(400, CaseAction.reopened, actor="customer")
    story.case(500, CaseAction.resolution_proposed, outcome={
        "solution": "apology", "party_at_fault": "company", "root_cause": "SV-01"})
    case = logic.fold_case(story.archived())
    # Then the row shows the newest outcome and no approver; the contact stays the last one
    assert (case.solution, case.compensation_amount, case.compensation_currency) == ("apology", None, None)
    assert (case.approved_by, case.reopen_count, case.status) == (None, 1, "reopened")
    assert case.last_contact_kind == "visit"


def test_co_handlers_are_listed_once_in_the_order_added() -> None:
    story = Story("W3").register(0).route(1, 1)
    for minute, who in ((10, "a"), (20, "b"), (30, "a")):
        story.case(minute, CaseAction.co_handler_added, actor="sup",
                   assignment={"handler": who, "reason": "r"})
    story.case(40, CaseAction.co_handler_added, actor="sup", assignment={"department": "legal", "reason": "r"})
    assert logic.fold_case(story.archived()).co_handlers == "b@, a@, @legal"


def test_the_trail_keeps_the_work_without_personal_data() -> None:
    # Given the worked case's archived events
    trail = worked_story("W4").archived()
    text = json.dumps([e.summary for e in trail], ensure_ascii=False)
    # Then no personal data is in any summary: staff text is scrubbed
    assert not [p for p in PERSONAL if p in text] and EMAIL not in text
    by_action = {e.action: e.summary for e in trail if e.type == "case.updated"}
    assert by_action["transferred"]["assignment"] == {
        "handler": None, "department": "billing", "reason": "billing dispute, customer on +86*******8000"}
    assert [m["owner"] for m in by_action["plan_decided"]["plan"]["measures"]] == [
        "quality-l1-02", "billing-l1-01"]
    assert by_action["resolved"]["outcome"]["compensation"] == {"amount": "800.00", "currency": "CNY"}
    assert by_action["resolved"]["outcome"]["approved_by"] == "billing-head"
    assert by_action["approved"]["approval"] == {"proposal_event_id": "p-1", "requester": "billing-l1-01"}
    assert by_action["contacted"]["contact"] == {
        "kind": "visit", "purpose": "revisit", "reached": True, "score": 4}
    # And an event without structured work keeps the summary it always had
    assert set(Story("W5").register(0).case(1, CaseAction.acknowledged).archived()[-1].summary) == {
        "result", "score", "code"}


def test_any_order_of_the_work_gives_the_same_row() -> None:
    events = worked_story("W6").archived()
    rows = {logic.fold_case(random.Random(seed).sample(events, len(events))) for seed in range(5)}
    assert len(rows) == 1 and rows == {logic.fold_case(events)}


def test_a_suggestions_assessment_folds_into_its_row_and_the_later_one_stands() -> None:
    # Given a suggestion declined by the head, then adopted by the handler (reason with a phone)
    story = Story("S1").register(0).route(1, 1)
    story.case(10, CaseAction.suggestion_assessed, actor="quality-head",
               assessment={"decision": "declined", "reason": f"budget; asked {PHONE}"})
    first = logic.fold_case(story.archived())
    story.case(20, CaseAction.suggestion_assessed, actor="quality-l1-01",
               assessment={"decision": "adopted", "reason": "customers keep asking", "measure": "night shift"})
    # When its events are folded (in any order)
    events = story.archived()
    rows = {logic.fold_case(random.Random(seed).sample(events, len(events))) for seed in range(5)}
    case = logic.fold_case(events)
    # Then the first fold held the decline, scrubbed; the whole trail holds the adoption
    assert (first.assessment_decision, first.assessed_by, first.assessed_at) == (
        "declined", "quality-head", story.at(10))
    assert first.assessment_reason == "budget; asked +86*******8000"
    assert rows == {case}
    assert (case.assessment_decision, case.assessment_reason, case.assessed_at, case.assessed_by) == (
        "adopted", "customers keep asking", story.at(20), "quality-l1-01")
    assert case.status == "open"  # an assessment is work on the case, not a change of its status
    # And the history names the decision in both languages
    zh = logic.history_lines(events, lang="zh")[-1]
    en = logic.history_lines(events, lang="en")[-1]
    assert "建议已评估，采纳，理由：customers keep asking，改进：night shift" in zh
    assert "suggestion assessed, adopted, reason: customers keep asking, change: night shift" in en
