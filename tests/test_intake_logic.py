"""Intake's pure rules: numbering, normalisation, de-duplication keys, the state fold."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from schemas.events import Channel, Nature
from services.common.errors import Rejected
from services.common.policy import load_policy
from services.intake import logic

NOW = datetime(2026, 11, 23, 9, 30, 15, 123000, tzinfo=UTC)
DESKS = load_policy().router.channel_desks


def _normalise(payload: dict | str, channel: Channel = Channel.web_form):  # type: ignore[no-untyped-def,type-arg]
    return logic.normalise(channel, payload, complaint_id="X", message_id="m", received_at=NOW,
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
    ("  <p>Hello&nbsp;<b>world</b></p>  ", "Hello&nbsp; world"),
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
                    "order_id": "O-1"})
    assert (c.subject, c.description, c.order_id) == ("Bad", "Broken screen", "O-1")
    assert c.customer.email == "li@example.com" and c.customer.language == "en"
    assert c.first_contact == "web-desk" and c.nature is Nature.complaint


def test_phone_agent_is_the_first_contact_and_text_payloads_are_accepted() -> None:
    assert _normalise({"transcript": "客户说手机坏了", "agent_id": "agent-9"}, Channel.phone).first_contact == "agent-9"
    sms = _normalise("收费不对，多扣了钱", Channel.sms)
    assert sms.description == "收费不对，多扣了钱" and sms.customer.language == "zh"


@pytest.mark.parametrize("payload", [{}, {"subject": "only a subject"}, {"text": "   "},
                                     {"text": "fine", "nature": "rant"}])
def test_unusable_payloads_are_rejected_with_a_reason(payload: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(Rejected, match="payload"):
        _normalise(payload)


def test_customer_key_is_keyed_and_hides_the_phone() -> None:
    a = _normalise({"text": "x", "phone": "13800138000"}).customer_key
    b = _normalise({"text": "y", "phone": "13800138000"}).customer_key
    assert a == b and "13800138000" not in a
    other = logic.customer_key(_normalise({"text": "x", "phone": "13800138000"}).customer,
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
