"""Every rule that reads customer text stays linear on hostile text of the maximum length.

A description of 10,000 digits once took 32 s to assess (the amount patterns retried from
every digit of the run). Each rule here must finish a 20,000-character text (intake's cap)
well within a budget; a call over it is measured twice more and the fastest counts, so a
pause of the loaded machine does not fail the test, while a quadratic rule stays slow on
every attempt.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Channel, Complaint, Contact
from services.common.errors import Rejected
from services.common.policy import load_policy
from services.intake import channels, logic
from services.intake.channels.base import ChannelMessage
from services.router.classify import amounts_in, assess, classify, fold
from services.router.taxonomy import load_taxonomy
from tools.fuzz.generate import HOSTILE_UNITS

SIZE = logic.MAX_DESCRIPTION  # 20,000 characters: what intake keeps of a description
BUDGET = 1.0  # seconds per call: linear rules take a few milliseconds, the quadratic ones took minutes
POLICY, TAXONOMY = load_policy(), load_taxonomy()
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def complaint(text: str) -> Complaint:
    return Complaint(complaint_id="261123-AAAAAAAAAA", channel=Channel.web_form, received_at=T0,
                     source_message_id="web_form:id:x", customer=Contact(), customer_key="anonymous",
                     first_contact="web-desk", subject=text[:200], description=text)


def normalise(text: str) -> Complaint:
    return logic.normalise(Channel.web_form, ChannelMessage(text=text), complaint_id="261123-AAAAAAAAAA",
                           dedupe="k", received_at=T0, rules=POLICY.intake, desks={},
                           identity_secret=b"k" * 16)


RULES: dict[str, Callable[[str], object]] = {
    "router.fold": fold,
    "router.amounts_in": lambda text: amounts_in(fold(text)),
    "router.classify": lambda text: classify(text, taxonomy=TAXONOMY),
    "router.assess": lambda text: assess(complaint(text), POLICY.router.severity, repeat=True),
    "intake.clean_text": logic.clean_text,
    "intake.detect_language": logic.detect_language,
    "intake.detect_demand": lambda text: logic.detect_demand(text, rules=POLICY.intake),
    "intake.detect_nature": lambda text: logic.detect_nature(text, rules=POLICY.intake),
    "intake.normalise": normalise,
    "intake.sms": lambda text: channels.parse(Channel.sms, text[:10_000]),
    "intake.wechat": lambda text: channels.parse(
        Channel.wechat, "<xml><FromUserName>u</FromUserName><MsgType>text</MsgType><Content><![CDATA["
        + text.replace("]]>", "") + "]]></Content></xml>"),
}


def elapsed(rule: Callable[[str], object], text: str) -> float:
    """Seconds ``rule`` takes on ``text``: the fastest of up to three calls (the first under budget)."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        try:
            rule(text)
        except (ValueError, Rejected):  # refused input (pydantic's errors, intake's refusals) still had to finish
            pass
        best = min(best, time.perf_counter() - started)
        if best < BUDGET:
            break
    return best


def fill(units: list[str], size: int = SIZE) -> str:
    """The units, one after the other, repeated to ``size`` characters."""
    unit = "".join(units) or "x"
    return (unit * (size // len(unit) + 1))[:size]


KNOWN = {  # the shapes that were slow, and their neighbours
    "digit run": "9" * SIZE,
    "grouped digits": fill(["111,"]),
    "decimal chain": fill(["1."]),
    "yen and digits": "¥" + "1" * (SIZE - 1),
    "digits before a unit": "1" * (SIZE - 1) + "元",
    "digits with spaces": fill(["1 "]),
    "unclosed tags": fill(["<a "]),
    "nested markup": "<b>" * 2000 + "x" + "</b>" * 2000,
    "mixed scripts": fill(["退款 refund ٣١٢ Привет 👍🏽 ＡＰＰ"]),
    "character references": "&#" + "1" * (SIZE - 2),
}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("shape", KNOWN)
def test_every_rule_is_linear_on_the_known_hostile_shapes(rule: str, shape: str) -> None:
    # Given a hostile text of the maximum length; when the rule reads it; then it is fast
    assert elapsed(RULES[rule], KNOWN[shape]) < BUDGET


def nested(opening: str, depth: int) -> str:
    """``depth`` openings, a word, and as many closings, cut at 20,000 characters."""
    return (opening * depth + "x" + opening.replace("<", "</") * depth)[:SIZE]


UNITS = st.one_of(st.sampled_from(HOSTILE_UNITS), st.text(min_size=1, max_size=6))
SHAPES = st.one_of(  # (how, parts): drawn small, built to 20,000 characters in the test
    st.tuples(st.just("repeat"), st.lists(UNITS, min_size=1, max_size=3)),
    st.tuples(st.just("nest"), st.tuples(st.sampled_from(["<b>", "<div class=x>", "<a ", "<!--", "<script>",
                                                          "[", "((", "{", "&#"]), st.integers(1, 5000))),
    st.tuples(st.just("repeat"), st.lists(st.sampled_from(["9", "1,", "1.", "¥", "$", " ", "万", "元", "rmb",
                                                           "usd", "€", "\n"]), min_size=1, max_size=4)),
)


def build(shape: tuple[str, object]) -> str:
    how, parts = shape
    if how == "nest":
        opening, depth = parts  # type: ignore[misc]
        return nested(opening, depth)
    return fill(parts)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(shape=SHAPES)
def test_every_rule_finishes_any_hostile_text_within_budget(shape: tuple[str, object]) -> None:
    # Given generated hostile text (repeated units, nested markup, separators) of up to 20,000 characters
    text = build(shape)
    # When every rule reads it; then each one finishes within the budget
    slow = {name: round(t, 3) for name, rule in RULES.items() if (t := elapsed(rule, text)) >= BUDGET}
    assert not slow, f"over {BUDGET}s on {text[:40]!r}...: {slow}"


@pytest.mark.parametrize(("text", "found"), [
    ("1,2345元", {"CNY": 2345}),
    ("85.1,000元", {"CNY": 1000}),
    ("12345,500元", {"CNY": 345500}),
    ("¥9.5.3 and 9.5.3eur", {"CNY": 9.5, "EUR": 5.3}),
    ("rmb 100 usd 5", {"CNY": 100, "USD": 100}),
    ("order 1" + "0" * 500 + "元", {"CNY": math.inf}),
])
def test_amounts_read_as_the_patterns_did(text: str, found: dict[str, float]) -> None:
    # the linear reader keeps the old patterns' reading, odd ones included
    assert amounts_in(text) == found


def test_a_numeric_character_reference_of_thousands_of_digits_is_a_replacement_character() -> None:
    # html.unescape raised ValueError (int() of more than 4300 digits) on this
    assert logic.clean_text("broken &#" + "1" * 5000 + "; kettle &#0000065;") == "broken \ufffd kettle A"


@pytest.mark.parametrize("value", [10**400, float("inf"), "nan", "1e999"])
def test_a_detail_that_is_no_finite_number_is_no_severity_signal(value: object) -> None:
    # float(10**400) raised OverflowError and int(inf) in the reason would too
    c = complaint("The kettle broke").model_copy(update={"details": {"audience": value, "affected": value}})
    severity, reasons = assess(c, POLICY.router.severity, repeat=False)
    assert severity.value == "general" and "no severity signal" in reasons[0]
