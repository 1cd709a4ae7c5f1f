"""Intake's pure rules: numbering, normalisation, de-duplication keys, the state fold."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from schemas.events import Channel, Demand, Nature
from services.common.errors import Rejected
from services.common.policy import load_policy
from services.intake import channels, logic

NOW = datetime(2026, 11, 23, 9, 30, 15, 123000, tzinfo=UTC)
DESKS = load_policy().router.channel_desks


RULES = load_policy().intake


def _normalise(payload: dict | str, channel: Channel = Channel.web_form):  # type: ignore[no-untyped-def,type-arg]
    msg = channels.parse(channel, payload)
    return logic.normalise(channel, msg, complaint_id="X", dedupe="m", received_at=NOW, rules=RULES,
                           desks=DESKS, identity_secret=b"k" * 16)


def test_complaint_numbers_are_short_readable_and_sort_by_time() -> None:
    numbers = [logic.complaint_number(NOW + timedelta(milliseconds=ms), rnd)
               for ms, rnd in [(0, 2**23 - 1), (1, 0), (1000, 5), (86_400_000 - 1, 7)]]
    assert all(re.fullmatch(r"\d{6}-[0-9A-HJKMNP-TV-Z]{10}", n) for n in numbers)
    assert numbers == sorted(numbers)
    assert numbers[0].startswith("261123-")


def test_same_millisecond_numbers_differ_by_their_random_bits() -> None:
    assert logic.complaint_number(NOW, 1) != logic.complaint_number(NOW, 2)


@pytest.mark.parametrize(("raw", "clean"), [
    ("  <p>Hello&nbsp;<b>world</b></p>  ", "Hello world"),
    ("<style>p {}</style><script>alert(1)</script>text", "text"),
    ("line one\r\n\r\n   line   two ", "line one\nline two"),
    ("e\u0301", "\u00e9"),
])
def test_clean_text(raw: str, clean: str) -> None:
    assert logic.clean_text(raw) == clean


@pytest.mark.parametrize(("text", "lang"), [("手机坏了", "zh"), ("phone broken", "en"), ("iPhone 坏了", "zh")])
def test_language_detection(text: str, lang: str) -> None:
    assert logic.detect_language(text) == lang


def test_normalise_web_form() -> None:
    c = _normalise({"name": "Li", "email": "Li@Example.COM", "subject": "Bad", "description": "<b>Broken</b> screen",
                    "order_id": "O-1", "phone": "138 0013 8000", "submitted_at": "2026-11-23T17:30:00+08:00"})
    assert (c.subject, c.description, c.order_id) == ("Bad", "Broken screen", "O-1")
    assert c.customer.email == "li@example.com" and c.customer.language == "en"
    assert c.customer.phone == "+8613800138000"
    assert c.first_contact == "web-desk" and c.nature is Nature.complaint
    assert c.occurred_at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC) and c.occurred_utc_offset == "+08:00"


@pytest.mark.parametrize(("raw", "e164"), [
    ("13800138000", "+8613800138000"), ("+86 138-0013-8000", "+8613800138000"),
    ("+1 (202) 555-0143", "+12025550143"), ("12345", None), ("call me", None), ("", None),
])
def test_phone_numbers_become_e164(raw: str, e164: str | None) -> None:
    assert logic.normalise_phone(raw, region="CN") == e164


@pytest.mark.parametrize(("raw", "clean"), [
    ("Li.Lei@Example.COM", "li.lei@example.com"), ("not-an-email", None), ("a@b", None), (None, None),
])
def test_emails_are_validated_and_lower_cased(raw: str | None, clean: str | None) -> None:
    assert logic.normalise_email(raw) == clean


def test_unusable_contact_details_are_flagged_not_fatal() -> None:
    c = _normalise({"description": "broken", "phone": "12", "email": "nope"})
    assert c.customer.phone is None and c.customer.email is None
    assert c.details == {"phone_unusable": True, "email_unusable": True}


@pytest.mark.parametrize(("text", "demand"), [
    ("I want a refund now", Demand.refund), ("请给我换一个新的", Demand.replacement),
    ("需要维修", Demand.repair), ("我要求赔偿损失", Demand.compensation),
    ("Please explain why", Demand.explanation), ("just telling you", None),
])
def test_demand_is_read_from_the_text(text: str, demand: Demand | None) -> None:
    assert logic.detect_demand(text, rules=RULES) is demand


@pytest.mark.parametrize(("text", "nature"), [
    ("感谢小王的耐心服务，点赞！", Nature.praise), ("Thanks, great service!", Nature.praise),
    ("建议增加夜间客服", Nature.suggestion), ("Thanks for nothing, it is broken again", Nature.complaint),
    ("The screen cracked", Nature.complaint),
])
def test_nature_is_read_from_the_text(text: str, nature: Nature) -> None:
    assert logic.detect_nature(text, rules=RULES) is nature


def test_phone_agent_is_the_first_contact_and_text_payloads_are_accepted() -> None:
    assert _normalise({"transcript": "客户说手机坏了", "agent_id": "agent-9"}, Channel.phone).first_contact == "agent-9"
    sms = _normalise("收费不对，多扣了钱", Channel.sms)
    assert sms.description == "收费不对，多扣了钱" and sms.customer.language == "zh"


@pytest.mark.parametrize(("channel", "payload"), [
    (Channel.web_form, {}), (Channel.web_form, {"subject": "only a subject"}),
    (Channel.sms, {"text": ""}), (Channel.phone, {"caller": "1"}), (Channel.social, "a string"),
])
def test_unusable_payloads_are_refused(channel: Channel, payload: dict | str) -> None:  # type: ignore[type-arg]
    with pytest.raises((ValidationError, Rejected)):
        _normalise(payload, channel)


def test_text_that_is_only_markup_is_refused() -> None:
    with pytest.raises(Rejected, match="empty once cleaned"):
        _normalise({"description": "<p> </p>"})


def test_customer_key_is_keyed_and_hides_the_phone() -> None:
    a = _normalise({"description": "x", "phone": "13800138000"}).customer_key
    b = _normalise({"description": "y", "phone": "+86 138 0013 8000"}).customer_key
    assert a == b and "13800138000" not in a
    other = logic.customer_key(_normalise({"description": "x", "phone": "13800138000"}).customer,
                               account=None, secret=b"another-secret")
    assert other != a


def test_dedupe_key_prefers_the_channel_id_else_hashes_content() -> None:
    assert logic.dedupe_key(Channel.email, "<id@x>", {"a": 1}) == "email:id:<id@x>"
    assert logic.dedupe_key(Channel.sms, None, {"a": 1, "b": 2}) == logic.dedupe_key(Channel.sms, None, {"b": 2, "a": 1})
    assert logic.dedupe_key(Channel.sms, None, "x") != logic.dedupe_key(Channel.app, None, "x")


def test_case_state_folds_the_timeline_in_time_order() -> None:
    def ev(t: int, typ: str, **data: object) -> dict:  # type: ignore[type-arg]
        return {"id": f"e{t}", "time": f"2026-11-23T09:00:0{t}Z", "type": typ, "source": "s", "data": data}

    state = logic.case_state([
        ev(3, "case.updated", action="resolved", result="refunded"),
        ev(1, "complaint.registered", complaint_id="C1", channel="sms", nature="complaint",
           received_at="t", first_contact="sms-desk", subject="s"),
        ev(2, "complaint.routed", severity="urgent", department="billing", level="L2",
           first_contact_owner="sms-desk"),
        ev(4, "sla.alert", milestone="resolve", outcome="met", deadline="d", on_time=True),
    ])
    assert (state["status"], state["level"], state["result"]) == ("resolved", "L2", "refunded")
    assert state["deadlines"]["resolve"]["on_time"] is True
    assert [e["id"] for e in state["timeline"]] == ["e1", "e2", "e3", "e4"]

