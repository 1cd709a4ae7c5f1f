"""The notifier and the work on a case: the result text from a policy template, a revisit
contact as the satisfaction answer, and a revisit done in person withdrawing the survey."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from schemas.events import CaseAction, CaseEvent, CaseUpdate, Contact, NotificationKind
from services.common.errors import Rejected
from services.common.policy import SatisfactionPolicy
from services.notifier import logic
from services.notifier.handlers import Notifier
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings
from tests.fakes import DictCustomers, DictOutbox, FixedClock, RecordingPublisher
from tests.test_notifier import POLICY, T0, registered

REFUND = {"solution": "refund", "party_at_fault": "company", "root_cause": "BL-01", "template": "refunded",
          "fields": {"amount": "¥120.00", "date": "2026-12-01"}}


def case(action: CaseAction, **fields: Any) -> CaseEvent:
    return CaseEvent.new(CaseUpdate(complaint_id="C-1", action=action, actor="agent-1", **fields),
                         source="desk", time=T0, subject="C-1")


def result_body(event: CaseEvent, language: Any) -> str:
    notes = logic.customer_notices(event, Contact(phone="+8613800138000", language=language),
                                   templates=POLICY.notifier, sla_scale=1, results=POLICY.result_templates)
    return next(s.note.body for s in notes if s.note.kind is NotificationKind.result)


@pytest.mark.parametrize(("event", "language", "says", "never"), [
    # Given a resolution with a templated outcome, Then the customer reads the policy's text
    (case(CaseAction.resolved, result="refund approved, talked to wife at 138 0013 8000", outcome=REFUND),
     "zh", "已为您办理退款 ¥120.00，预计 2026-12-01 前到账。", "138 0013 8000"),
    (case(CaseAction.resolved, result="internal words", outcome=REFUND), "en",
     "We have refunded ¥120.00; it reaches your account by 2026-12-01.", "internal words"),
    # Given a resolution without a template (events before the desk), Then its result, as before
    (case(CaseAction.resolved, result="replaced the unit"), "en", "replaced the unit", "{"),
])
def test_the_result_text_is_the_policy_template_filled_with_the_outcome_fields(
        event: CaseEvent, language: str, says: str, never: str) -> None:
    body = result_body(event, language)
    assert says in body and never not in body


@pytest.mark.parametrize(("outcome", "reason"), [
    ({**REFUND, "template": "gift_voucher"}, "data.outcome: unknown result template 'gift_voucher'"),
    ({**REFUND, "fields": {"amount": "¥1"}}, "data.outcome: result template 'refunded' fields: missing ['date']"),
    ({**REFUND, "fields": {**REFUND["fields"], "x": "1"}}, "not in the template ['x']"),  # type: ignore[dict-item]
])
def test_an_outcome_that_does_not_fit_its_template_is_refused_never_sent_as_free_text(
        outcome: dict[str, Any], reason: str) -> None:
    # Given a resolution whose template is unknown or whose fields do not fit it
    event = case(CaseAction.resolved, result="free text", outcome=outcome)
    # When the notices are computed, Then it is refused with the reason (the boundary dead-letters it)
    with pytest.raises(Rejected) as refused:
        result_body(event, "en")
    assert reason in str(refused.value)


def contacted(score: int | None = None, *, purpose: str = "revisit", reached: bool = True) -> CaseEvent:
    return case(CaseAction.contacted, contact={"kind": "phone_callback", "purpose": purpose,
                                               "reached": reached, "score": score})


@pytest.mark.parametrize(("answer", "reopens", "revisited"), [
    # Given a contact record and a threshold of 2, Then a revisit's low score reopens, like a survey
    (contacted(1), True, True),
    (contacted(2), True, True),
    (contacted(3), False, True),
    (contacted(None), False, True),                      # revisited, no score given
    (contacted(None, reached=False), False, False),      # nobody answered
    (contacted(None, purpose="feedback"), False, False),
    (case(CaseAction.satisfaction, score=1), True, False),
])
def test_a_revisit_contact_is_the_satisfaction_answer(answer: CaseEvent, reopens: bool, revisited: bool) -> None:
    reopened = logic.reopen(answer, satisfaction=SatisfactionPolicy(dissatisfied_at_most=2))
    assert (reopened is not None) == reopens and logic.revisited(answer) is revisited
    if reopened is not None:  # caused by the answer: the router escalates once for both
        assert reopened.causationid == answer.id and reopened.data.action is CaseAction.reopened
        assert reopened.data.note == f"dissatisfied: score {logic.answer_score(answer)} of 5"


def make_notifier() -> tuple[Notifier, RecordingPublisher, DictOutbox]:
    publisher, outbox = RecordingPublisher(), DictOutbox()
    notifier = Notifier(settings=NotifierSettings(), policy=POLICY, publisher=publisher,
                        customers=DictCustomers(), outbox=outbox, queues=["outbox"], clock=FixedClock(T0),
                        metrics=NotifierMetrics.create(CollectorRegistry()))
    return notifier, publisher, outbox


def test_with_fakes_a_bad_template_queues_nothing_and_a_revisit_call_withdraws_the_survey() -> None:
    async def scenario() -> None:
        notifier, publisher, _ = make_notifier()
        await notifier.on_registered(None, registered().to_bytes())
        # When a resolution names an unknown template, Then it is refused and nothing is queued
        bad = case(CaseAction.resolved, result="x", outcome={**REFUND, "template": "nope"})
        with pytest.raises(Rejected):
            await notifier.on_case_event(None, bad.to_bytes())
        kinds = [e.data.kind for e in publisher.of_type("notification.recorded")]  # type: ignore[attr-defined]
        assert kinds == [NotificationKind.acknowledgement]
        # When a good one comes, Then the result goes now and the revisit survey is deferred
        await notifier.on_case_event(None, case(CaseAction.resolved, result="x", outcome=REFUND).to_bytes())
        steps = [(e.data.kind, e.data.status) for e in publisher.of_type("notification.recorded")]  # type: ignore[attr-defined]
        assert steps[1:] == [(NotificationKind.result, "queued"), (NotificationKind.revisit, "deferred")]
        # When the handler revisits the customer by phone (a satisfied answer)
        call = contacted(5)
        await notifier.on_case_event(None, call.to_bytes())
        await notifier.on_case_event(None, call.to_bytes())  # a redelivery
        # Then the survey message is withdrawn, once, and nothing reopens the case
        steps = [(e.data.kind, e.data.status, e.data.detail)  # type: ignore[attr-defined]
                 for e in publisher.of_type("notification.recorded")]
        assert steps[3:] == [(NotificationKind.revisit, "cancelled", "revisited by phone_callback")]
        assert publisher.of_type("case.updated") == []
    asyncio.run(scenario())


def test_with_fakes_a_dissatisfied_revisit_call_reopens_the_case() -> None:
    async def scenario() -> None:
        notifier, publisher, _ = make_notifier()
        await notifier.on_registered(None, registered().to_bytes())
        call = contacted(1)
        await notifier.on_case_event(None, call.to_bytes())
        (reopened,) = publisher.of_type("case.updated")
        assert reopened.causationid == call.id and reopened.data.action is CaseAction.reopened  # type: ignore[attr-defined]
    asyncio.run(scenario())

