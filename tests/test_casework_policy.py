"""The resolution policy: when a compensation needs approval, and the result templates."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.casework import Money, ResolutionOutcome, SolutionType
from services.common.errors import ConfigError
from services.common.policy import DEFAULT_POLICY, load_policy
from services.common.resolution import render_result

POLICY = load_policy()


@pytest.mark.parametrize(("amount", "currency", "needs"), [
    ("499.99", "CNY", False),   # below the CNY threshold (500)
    ("500.00", "CNY", True),    # at it: approval needed
    ("9999", "CNY", True),
    ("99.99", "USD", False),
    ("100", "USD", True),
    ("1", "JPY", True),         # a currency without a threshold always needs an approval
    ("0", "JPY", True),
])
def test_a_compensation_at_or_above_its_currencys_threshold_needs_approval(
        amount: str, currency: str, needs: bool) -> None:
    # Given the shipped policy, When a compensation is offered, Then the threshold decides
    money = Money(amount=Decimal(amount), currency=currency)
    assert POLICY.resolution.needs_approval(money) is needs


def test_a_resolution_without_compensation_needs_no_approval() -> None:
    assert POLICY.resolution.needs_approval(None) is False
    assert POLICY.resolution.approver_roles == ["department_head", "supervisor", "executive"]


def outcome(template: str | None, **fields: str) -> ResolutionOutcome:
    return ResolutionOutcome(solution=SolutionType.refund, party_at_fault="company", root_cause="BL-01",
                             template=template, fields=fields)


@pytest.mark.parametrize(("language", "text"), [
    ("zh", "已为您办理退款 ¥120.00，预计 2026-12-01 前到账。"),
    ("en", "We have refunded ¥120.00; it reaches your account by 2026-12-01."),
])
def test_a_result_template_is_filled_in_the_customers_language(language: Any, text: str) -> None:
    # Given the refunded template and its two fields, When rendered, Then the policy's text
    filled = render_result(outcome("refunded", amount="¥120.00", date="2026-12-01"), language,
                           templates=POLICY.result_templates)
    assert filled == text


@pytest.mark.parametrize(("given", "problem"), [
    (outcome(None), "the outcome names no result template"),
    (outcome("gift_voucher"), "unknown result template 'gift_voucher'; known: apology, compensated"),
    (outcome("refunded", amount="¥1"), "result template 'refunded' fields: missing ['date']"),
    (outcome("refunded", amount="¥1", date=" "), "missing ['date']"),
    (outcome("refunded", amount="¥1", date="d", note="x"),
     "result template 'refunded' fields: not in the template ['note']"),
])
def test_an_outcome_that_does_not_fit_its_template_is_refused(given: ResolutionOutcome, problem: str) -> None:
    # Given an outcome naming no, an unknown, or a half-filled template
    # When it is rendered, Then it is refused, and the message says why
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        render_result(given, "en", templates=POLICY.result_templates)


def test_field_values_are_not_read_as_templates() -> None:
    # Given a field value that looks like a placeholder, Then it is printed as given
    filled = render_result(outcome("explained", explanation="{0.__class__} {amount}"), "en",
                           templates=POLICY.result_templates)
    assert filled == "We looked into it: {0.__class__} {amount}"


@pytest.mark.parametrize(("change", "problem"), [
    ({"result_templates": {"x": {"zh": "{amount}", "en": "{amount.real}"}}},
     "result_templates.x: Value error, placeholder {amount.real} is not a plain {field_name}"),
    ({"result_templates": {"x": {"zh": "{amount}", "en": "{amount!r}"}}}, "placeholder {amount!r}"),
    ({"result_templates": {"x": {"zh": "{amount}", "en": "{date}"}}},
     "zh and en use different placeholders: zh ['amount'], en ['date']"),
    ({"result_templates": {"x": {"zh": "z"}}}, "result_templates.x.en: Field required"),
    ({"result_templates": {"Bad-Id": {"zh": "z", "en": "e"}}}, "ids must be lower case words"),
    ({"resolution": {"approval_above": {"cny": 5}, "approver_roles": ["supervisor"]}},
     "resolution.approval_above: Value error, currencies must be ISO codes like CNY: ['cny']"),
    ({"resolution": {"approval_above": {"CNY": -5}, "approver_roles": ["supervisor"]}},
     "thresholds must not be negative: ['CNY']"),
    ({"resolution": {"approval_above": {"CNY": 5}, "approver_roles": []}},
     "resolution.approver_roles: List should have at least 1 item"),
])
def test_a_bad_resolution_policy_names_file_field_and_problem(
        tmp_path: Path, change: dict[str, Any], problem: str) -> None:
    # Given the shipped policy with one section broken
    raw = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({**raw, **change}, allow_unicode=True), encoding="utf-8")
    # When it is loaded, Then the error names the file, the field and the problem
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


def test_the_shipped_templates_all_render_in_both_languages() -> None:
    # Given every shipped template filled with a value per placeholder, Then both languages render
    for template_id, template in POLICY.result_templates.items():
        given = outcome(template_id, **{name: "X" for name in template.fields})
        for language in ("zh", "en"):
            assert "{" not in render_result(given, language, templates=POLICY.result_templates)
