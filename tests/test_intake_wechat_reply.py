"""A WeChat customer's answer to a revisit (回访) sent on WeChat: a satisfaction score on that
complaint, not a new complaint. The customer key of a WeChat customer is the keyed hash of their
openid, so the revisit indexed under it is found when the same follower writes back (unit: intake
over the fakes, contacts sealed by a dict key store)."""

from __future__ import annotations

import asyncio

from schemas.events import (
    CaseEvent,
    Channel,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
)
from services.intake.handlers import REPLY_CHANNELS, Accepted
from tests.test_intake_wechat_account import OPENID, OTHER_OPENID, World


class Replies(World):
    """Intake over fakes, playing the WeChat follower and the notifier's revisit."""

    def __init__(self) -> None:
        super().__init__()
        self.pushes = 0

    def says(self, text: str, *, sender: str = OPENID, msg_id: str | None = None) -> Accepted:
        self.pushes += 1
        return self.wechat(text, sender=sender, msg_id=msg_id or f"73000000000000{self.pushes:05d}")

    def complaint(self, text: str = "洗衣机漏水，师傅来了两次都没修好") -> str:
        return self.says(text).complaint_id

    def revisit_sent(self, complaint_id: str) -> None:
        """The notifier's record of the revisit sent to the follower on WeChat, as intake's
        timeline consumer sees it on complaints.notifications."""
        record = NotificationRecord(
            notification_id=f"n-{complaint_id}", complaint_id=complaint_id, kind=NotificationKind.revisit,
            transport="wechat:wechat", recipient="wechat:***", language="zh", status="sent")
        event = NotificationEvent.new(record, source="notifier", time=self.clock(), subject=complaint_id)
        assert asyncio.run(self.intake.project_many([event.to_bytes()])) == [None]

    def project_published(self) -> None:
        asyncio.run(self.intake.project_many([e.to_bytes() for _, e in self.publisher.published]))

    def answers(self) -> list[CaseEvent]:
        return self.publisher.of_type(CaseEvent.EVENT_TYPE)

    def replies(self, outcome: str) -> float:
        value = self.registry.get_sample_value("complaints_intake_revisit_replies_total",
                                               {"channel": "wechat", "outcome": outcome})
        return value or 0.0


def test_wechat_is_a_channel_a_revisit_is_answered_on() -> None:
    assert Channel.wechat in REPLY_CHANNELS


def test_a_wechat_score_after_the_revisit_is_satisfaction_on_that_complaint_not_a_new_one() -> None:
    # Given a WeChat complaint, resolved and revisited on WeChat two days later
    w = Replies()
    complaint = w.complaint()
    w.clock.advance(days=2)
    w.revisit_sent(complaint)
    registered_before = len(w.registered())
    # When the follower answers "4分，谢谢" on WeChat
    accepted = w.says("4分，谢谢")
    # Then it is a satisfaction event on that complaint, by the customer, and nothing is registered
    assert (accepted.kind, accepted.complaint_id, accepted.duplicate) == ("case_event", complaint, False)
    (event,) = w.answers()
    assert (event.data.action, event.data.actor, event.data.score, event.data.note) == (
        "satisfaction", "customer", 4, "谢谢")
    assert [t for t, e in w.publisher.published if e is event] == ["complaints.lifecycle"]
    assert len(w.registered()) == registered_before
    assert w.replies("satisfaction") == 1
    # and the revisit is closed: a second "5" is an ordinary message, registered
    w.project_published()
    assert w.says("5").kind == "registered"


def test_a_redelivered_wechat_answer_is_the_same_event() -> None:
    # Given an answer recorded once
    w = Replies()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    first = w.says("4", msg_id="7300000000099999999")
    # When WeChat pushes the same message again (same MsgId), before and after the revisit closed
    again = w.says("4", msg_id="7300000000099999999")
    w.project_published()
    later = w.says("4", msg_id="7300000000099999999")
    # Then it is the first answer each time, under its event id, and nothing is registered for it
    assert first.kind == again.kind == later.kind == "case_event"
    assert first.event_id == again.event_id == later.event_id and again.duplicate and later.duplicate
    assert {e.id for e in w.answers()} == {first.event_id}
    assert [r.data.complaint_id for r in w.registered()] == [complaint]


def test_a_score_from_another_follower_is_not_matched() -> None:
    # Given one follower's revisit open
    w = Replies()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    # When another follower (another openid: another customer key) writes "4"
    accepted = w.says("4", sender=OTHER_OPENID)
    # Then it is registered as that follower's message, and the revisit stays open
    assert accepted.kind == "registered" and accepted.complaint_id != complaint
    assert w.answers() == [] and w.replies("satisfaction") == 0
    assert w.says("5").kind == "case_event"


def test_a_new_grievance_on_wechat_after_the_revisit_is_registered() -> None:
    # Given an open revisit
    w = Replies()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    # When the follower writes a new grievance instead of a score
    accepted = w.says("新买的冰箱又坏了，压缩机一直响，要求退货")
    # Then it is a new complaint, and the reply is counted as no score
    assert accepted.kind == "registered" and accepted.complaint_id != complaint
    assert w.answers() == [] and w.replies("not_a_score") == 1


def test_a_wechat_score_with_two_open_revisits_goes_to_a_person() -> None:
    # Given two complaints of one follower, both revisited
    w = Replies()
    first, second = w.complaint(), w.complaint("冰箱不制冷")
    w.revisit_sent(first)
    w.clock.advance(hours=1)
    w.revisit_sent(second)
    # When the follower answers "4" without saying which
    accepted = w.says("4")
    # Then a note on the latest revisited one asks a person to place it; no satisfaction recorded
    (event,) = w.answers()
    assert (accepted.complaint_id, event.data.action) == (second, "note")
    assert "ambiguous" in event.data.note and first in event.data.note
    assert w.replies("ambiguous") == 1


def test_a_wechat_score_after_the_reply_window_is_an_ordinary_message() -> None:
    # Given a revisit sent longer ago than the reply window
    w = Replies()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    w.clock.advance(seconds=w.intake.policy.intake.reply_window.total_seconds() + 60)
    # When the follower writes "4", Then it is registered as a message
    assert w.says("4").kind == "registered"
    assert w.answers() == [] and w.replies("satisfaction") == 0


def test_the_revisit_is_indexed_under_the_openids_customer_key_from_the_sealed_registration() -> None:
    # Given a WeChat complaint whose registration holds the openid sealed (no phone, no e-mail)
    w = Replies()
    complaint = w.complaint()
    (reg,) = w.registered()
    assert reg.data.customer.sealed is not None and reg.data.customer.sealed.account is not None
    # When its revisit is recorded sent
    w.revisit_sent(complaint)
    # Then it is open under that customer key (the keyed hash of the openid), and only that one
    assert list(w.revisits.open_) == [reg.data.customer_key]
    assert set(w.revisits.open_[reg.data.customer_key]) == {complaint}


def test_an_sms_customers_revisit_is_not_answered_by_a_wechat_follower() -> None:
    # Given an SMS customer's revisit open
    w = Replies()
    sms = asyncio.run(w.receive(Channel.sms, {"message_id": "SM-1", "sender": "+8613800138000",
                                               "text": "手机屏幕坏了没人管"}))
    w.revisit_sent(sms.complaint_id)
    # When a WeChat follower writes "4", Then it is no answer to it (another customer key)
    accepted = w.says("4")
    assert accepted.kind == "registered" and accepted.complaint_id != sms.complaint_id
    assert w.answers() == [] and len(w.registered()) == 2

