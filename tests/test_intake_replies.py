"""Replies to a revisit (回访), pure: reading a score from free text, matching it to a revisit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
)
from services.intake.replies import (
    MAX_COMMENT,
    OpenRevisit,
    ReplyOutcome,
    Score,
    match_reply,
    read_score,
    reply_text,
    revisit_open_since,
    touches_revisit,
)

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)
WEEK = timedelta(days=7)
C1, C2 = "261120-AAAAAAAAAA", "261121-BBBBBBBBBB"


@pytest.mark.parametrize(("text", "score", "comment"), [
    # digits, with a unit or out of five; full-width ones too
    ("4", 4, None), ("5", 5, None), ("1", 1, None), (" 3 ", 3, None), ("4.", 4, None),
    ("4分", 4, None), ("4 分", 4, None), ("４分", 4, None), ("4/5", 4, None), ("4 / 5", 4, None),
    ("4／5", 4, None), ("给5分", 5, None), ("打4分", 4, None), ("Score: 4", 4, None),
    ("4 out of 5", 4, None), ("four out of five", 4, None), ("4 out of 5 stars", 4, None),
    ("4 stars", 4, None), ("1 star", 1, None), ("5 points", 5, None), ("4星", 4, None),
    ("4颗星", 4, None),
    # Chinese numerals and words
    ("四", 4, None), ("五分", 5, None), ("三星", 3, None), ("五星好评", 5, "好评"),
    ("满意", 4, None), ("非常满意", 5, None), ("很满意", 5, None), ("我很满意", 5, None),
    ("基本满意", 3, None), ("一般", 3, None), ("不满意", 2, None), ("我不满意", 2, None),
    ("不太满意", 2, None), ("很不满意", 1, None), ("非常不满意", 1, None), ("比较满意", 4, None),
    # stars
    ("★★★★", 4, None), ("★★★★☆", 4, None), ("★", 1, None), ("⭐⭐⭐⭐", 4, None),
    ("⭐️⭐️⭐️", 3, None), ("⭐⭐⭐⭐⭐ 谢谢", 5, "谢谢"),
    # English words
    ("very satisfied", 5, None), ("Very Satisfied!", 5, None), ("satisfied", 4, None),
    ("neutral", 3, None), ("dissatisfied", 2, None), ("not satisfied", 2, None),
    ("very dissatisfied", 1, None), ("VERY   DISSATISFIED", 1, None),
    # with a short comment before or after
    ("4，还行", 4, "还行"), ("5分，师傅很专业", 5, "师傅很专业"), ("服务很好，5分", 5, "服务很好"),
    ("满意，谢谢", 4, "谢谢"), ("2 the engineer was late", 2, "the engineer was late"),
    ("Thanks, 5/5", 5, "Thanks"), ("very satisfied, thank you!", 5, "thank you"),
    ("3 维修太慢了", 3, "维修太慢了"), ("评分: 5", 5, None), ("服务: 4星", 4, "服务"),
])
def test_a_reply_that_gives_a_score_reads_as_that_score(text: str, score: int, comment: str | None) -> None:
    # Given a customer's answer to the revisit; When it is read; Then it is that score and comment
    assert read_score(text) == Score(score, comment)


@pytest.mark.parametrize("text", [
    # numbers that are not scores: phones, orders, durations, decimals, lists, ranges
    "13800138000", "+86 138 0013 8000", "订单 41234", "订单号41234", "41234", "45", "6", "0", "10",
    "我等了4天", "4天了还没修好", "等了4小时", "4分钟就挂了电话", "4.5", "4,5", "1、屏幕坏了",
    "1. 屏幕坏了", "3-5天", "4/10", "5 5", "4 5", "第4次了", "五星级酒店的服务都比你们好",
    "5 days", "3 times", "2 weeks and nothing", "1 more question", "3 hours waiting", "4 天了",
    "5月4日来修的", "2号楼漏水", "4S店", "5G信号差", "4K电视坏了",
    "星期四来修的", "满意度调查没收到", "4:30 the technician came", "rated 4.5",
    # grievances, questions, other answers
    "还是没修好，又坏了", "屏幕又碎了，我要退款", "what is my complaint number?", "ok", "好的", "收到",
    "one more thing: it broke again", "one of five units broke", "two of them failed", "是", "不", "?", "", "   ",
    # a score followed by a long complaint: the complaint is registered
    "4，但是还是坏了，而且客服态度非常差，我要求退款并且赔偿我的损失，否则我就去消费者协会投诉你们",
    "2 - the technician came three days late, broke the hinge and left without fixing anything at all",
])
def test_a_message_that_is_not_a_plain_score_reads_as_none(text: str) -> None:
    # Given a message that is a grievance, a number of another kind, or a score with a long
    # complaint; When it is read; Then it is no score (intake registers it as today)
    assert read_score(text) is None


@given(st.from_regex(r"[0-9]{2,15}", fullmatch=True))
def test_a_run_of_two_or_more_digits_is_never_a_score(digits: str) -> None:
    # phone numbers, order numbers, years
    assert read_score(digits) is None
    assert read_score(f"订单 {digits}") is None


@given(st.integers(0, 999), st.sampled_from(["天", "小时", "分钟", "次", "个月", "周"]))
def test_a_count_of_days_or_times_is_never_a_score(n: int, unit: str) -> None:
    assert read_score(f"我等了{n}{unit}") is None
    assert read_score(f"{n}{unit}了还没修好") is None


@given(st.sampled_from(["4", "4分", "★★★★", "满意", "very satisfied"]),
       st.text(alphabet="修好坏了太慢服务态度差我要退款投诉", min_size=MAX_COMMENT // 2 + 1, max_size=200))
def test_a_score_with_a_long_complaint_after_it_is_not_a_score(score: str, complaint: str) -> None:
    assert read_score(f"{score}，{complaint}") is None


@given(st.text(max_size=200))
def test_whatever_is_read_is_a_score_from_one_to_five_with_a_short_comment(text: str) -> None:
    found = read_score(text)
    assert found is None or (1 <= found.score <= 5 and len(found.comment or "") <= MAX_COMMENT)


def test_an_email_reply_is_read_without_the_quoted_revisit() -> None:
    # Given an e-mail answer above the quoted revisit
    body = ("4，谢谢\n\nOn Tue, 1 Dec 2026 at 10:00, Service wrote:\n"
            "> 请回复 1-5 分为本次服务评分\n> 投诉编号 261120-AAAAAAAAAA")
    # Then only the new part is read
    assert reply_text(body) == "4，谢谢"
    assert reply_text("5\n\n在 2026年12月1日 10:00，客服 写道：\n请回复1-5分") == "5"
    assert reply_text("很满意\n-----Original Message-----\nFrom: x") == "很满意"


# ---- matching -------------------------------------------------------------------------------

def _open(*ids_ages: tuple[str, float]) -> list[OpenRevisit]:
    return [OpenRevisit(c, T0 - timedelta(days=d)) for c, d in ids_ages]


@pytest.mark.parametrize(("text", "revisits", "thread", "outcome", "complaint"), [
    # one open revisit: a score answers it
    ("4", _open((C1, 1)), None, ReplyOutcome.satisfaction, C1),
    ("非常满意", _open((C1, 6.9)), None, ReplyOutcome.satisfaction, C1),
    # ... but not once the window has passed, and a grievance never does
    ("4", _open((C1, 7.1)), None, ReplyOutcome.no_revisit, None),
    ("4", [], None, ReplyOutcome.no_revisit, None),
    ("还是没修好，又坏了", _open((C1, 1)), None, ReplyOutcome.not_a_score, None),
    # two open: ambiguous, the latest revisited named for a person
    ("4", _open((C1, 1), (C2, 2)), None, ReplyOutcome.ambiguous, C1),
    ("4", _open((C1, 3), (C2, 2)), None, ReplyOutcome.ambiguous, C2),
    # ... unless the text or the e-mail thread names one of them
    (f"{C2} 4分", _open((C1, 1), (C2, 2)), None, ReplyOutcome.satisfaction, C2),
    (f"投诉{C2.lower()}：满意", _open((C1, 1), (C2, 2)), None, ReplyOutcome.satisfaction, C2),
    ("4", _open((C1, 1), (C2, 2)), C2, ReplyOutcome.satisfaction, C2),
    # a number or thread of another complaint names nothing open
    ("261122-CCCCCCCCCC 4", _open((C1, 1), (C2, 2)), None, ReplyOutcome.ambiguous, C1),
    ("4", _open((C1, 1), (C2, 2)), "261122-CCCCCCCCCC", ReplyOutcome.ambiguous, C1),
    ("4", _open((C1, 1), (C2, 8)), None, ReplyOutcome.satisfaction, C1),  # C2's window passed
])
def test_a_reply_goes_to_the_one_open_revisit_to_a_person_or_is_a_new_message(
        text: str, revisits: list[OpenRevisit], thread: str | None, outcome: ReplyOutcome,
        complaint: str | None) -> None:
    # Given a customer's open revisits; When their message arrives now
    decision = match_reply(text, revisits=revisits, now=T0, window=WEEK, thread=thread)
    # Then it answers one, goes to a person, or is an ordinary message
    assert (decision.outcome, decision.complaint_id) == (outcome, complaint)


def test_an_ambiguous_reply_names_every_open_revisit_latest_first() -> None:
    decision = match_reply("4分", revisits=_open((C2, 2), (C1, 1)), now=T0, window=WEEK)
    assert decision.candidates == (C1, C2) and decision.score == Score(4, None)


# ---- which revisit is open ----------------------------------------------------------------------

def _sent(at: datetime, *, status: Literal["sent", "queued", "outboxed"] = "sent",
          kind: NotificationKind = NotificationKind.revisit) -> dict[str, Any]:
    record = NotificationRecord(notification_id="n", complaint_id=C1, kind=kind, transport="sms",
                                recipient="+86*******8000", language="zh", status=status)
    event: dict[str, Any] = json.loads(NotificationEvent.new(record, source="notifier", time=at,
                                                             subject=C1).to_bytes())
    return event


def _case(at: datetime, action: CaseAction, score: int | None = None) -> dict[str, Any]:
    update = CaseUpdate(complaint_id=C1, action=action, actor="customer", score=score)
    event: dict[str, Any] = json.loads(CaseEvent.new(update, source="intake", time=at, subject=C1).to_bytes())
    return event


@pytest.mark.parametrize(("events", "open_since"), [
    ([], None),
    ([_sent(T0)], T0),
    ([_sent(T0, status="queued"), _sent(T0, status="outboxed")], None),  # reached nobody
    ([_sent(T0, kind=NotificationKind.result)], None),
    ([_sent(T0), _case(T0 + timedelta(hours=1), CaseAction.satisfaction, score=4)], None),
    ([_case(T0 + timedelta(hours=1), CaseAction.satisfaction, score=4), _sent(T0)], None),  # any order
    ([_sent(T0), _case(T0 + timedelta(hours=1), CaseAction.reopened)], None),
    ([_sent(T0), _case(T0 + timedelta(hours=1), CaseAction.note)], T0),
    # reopened, resolved again and revisited again: the new revisit is open
    ([_sent(T0), _case(T0 + timedelta(hours=1), CaseAction.reopened), _sent(T0 + timedelta(days=3))],
     T0 + timedelta(days=3)),
])
def test_a_revisit_is_open_from_its_sending_until_an_answer_or_a_reopening(
        events: list[dict[str, Any]], open_since: datetime | None) -> None:
    assert revisit_open_since(events) == open_since


def test_only_a_sent_revisit_and_an_answer_or_reopening_make_intake_look_again() -> None:
    assert touches_revisit("notification.recorded", {"kind": "revisit", "status": "sent"})
    assert not touches_revisit("notification.recorded", {"kind": "revisit", "status": "queued"})
    assert touches_revisit("case.updated", {"action": "satisfaction"})
    assert not touches_revisit("case.updated", {"action": "note"})
    assert not touches_revisit("sla.alert", {"milestone": "revisit"})


@pytest.mark.parametrize(("headers", "thread"), [
    ("References: <complaint.261120-AAAAAAAAAA@complaints.example.com> <n-1@complaints.example.com>\r\n",
     C1),
    ("In-Reply-To: <complaint.261120-aaaaaaaaaa@complaints.example.com>\r\n", C1),
    ("In-Reply-To: <n-1@complaints.example.com>\r\n", None),  # the notification's own id: opaque
    ("References: <complaint.not-a-number@complaints.example.com>\r\n", None),
    ("", None),
])
def test_the_mail_channel_names_the_complaint_a_reply_threads_to(headers: str, thread: str | None) -> None:
    from services.intake.channels import mail

    # Given a reply whose threading headers name the notifier's thread <complaint.<number>@domain>
    raw = f"From: a@example.com\r\nSubject: Re: x\r\n{headers}\r\n4\r\n"
    # Then the parsed message carries that complaint's number
    assert mail.parse(raw).details.get(mail.REPLY_TO) == thread


@pytest.mark.parametrize(("window", "ok"), [("7d", True), ("1h", True), ("90d", True), ("30m", False),
                                            ("91d", False), ("soon", False)])
def test_the_reply_window_is_validated_when_the_policy_loads(tmp_path: Any, window: str, ok: bool) -> None:
    from pathlib import Path

    import yaml

    from services.common.errors import ConfigError
    from services.common.policy import DEFAULT_POLICY, load_policy

    # Given the default policy with another intake.reply_window
    raw = yaml.safe_load(Path(DEFAULT_POLICY).read_text(encoding="utf-8"))
    raw["intake"]["reply_window"] = window
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    # When it is loaded (at start-up); Then a window outside 1h..90d is refused, naming the field
    if ok:
        assert load_policy(path).intake.reply_window > timedelta(0)
    else:
        with pytest.raises(ConfigError, match="intake.reply_window"):
            load_policy(path)
