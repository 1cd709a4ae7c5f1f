"""The policy of resolutions: when a compensation needs approval, who approves, and the
customer-facing result templates (policy sections ``resolution`` and ``result_templates``).

``render_result`` is the one way a structured outcome becomes the text a customer reads:
the desk calls it before publishing a resolution, the notifier when it sends the result.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.casework import FIELD_NAME_PATTERN, Money, ResolutionOutcome

_FIELD_NAME = FIELD_NAME_PATTERN.strip("^$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def placeholders(text: str) -> set[str]:
    """The placeholder names of a template; refuses anything but plain ``{name}`` fields."""
    names: set[str] = set()
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if spec or conversion or not re.fullmatch(_FIELD_NAME, name):
            raise ValueError(f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                             f"{':' + spec if spec else ''}}} is not a plain {{field_name}} "
                             f"(lower case, digits, underscores)")
        names.add(name)
    return names


class ResultTemplate(_Frozen):
    """A customer-facing result text in both languages, with ``{field}`` placeholders."""

    zh: str = Field(min_length=1, max_length=2_000)
    en: str = Field(min_length=1, max_length=2_000)

    @model_validator(mode="after")
    def _same_fields(self) -> ResultTemplate:
        zh, en = placeholders(self.zh), placeholders(self.en)
        if zh != en:
            raise ValueError(f"zh and en use different placeholders: zh {sorted(zh)}, en {sorted(en)}")
        return self

    @property
    def fields(self) -> set[str]:
        """The placeholders both texts fill."""
        return placeholders(self.en)


class ResolutionPolicy(_Frozen):
    """When a resolution's compensation must be approved, and by whom (four-eyes)."""

    approval_above: dict[str, Decimal] = Field(
        description="Per ISO currency: a compensation at or above this amount needs an approval; "
                    "a currency not listed always does.")
    approver_roles: list[str] = Field(min_length=1, description="Staff roles that may approve.")

    @field_validator("approval_above")
    @classmethod
    def _currencies(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = sorted(c for c in value if len(c) != 3 or not c.isascii() or not c.isupper())
        if bad:
            raise ValueError(f"currencies must be ISO codes like CNY: {bad}")
        negative = sorted(c for c, amount in value.items() if amount < 0)
        if negative:
            raise ValueError(f"thresholds must not be negative: {negative}")
        return value

    def needs_approval(self, compensation: Money | None) -> bool:
        """True when a compensation reaches its currency's threshold (or its currency has none)."""
        if compensation is None:
            return False
        limit = self.approval_above.get(compensation.currency)
        return limit is None or compensation.amount >= limit


def render_result(outcome: ResolutionOutcome, language: Literal["zh", "en"], *,
                  templates: Mapping[str, ResultTemplate]) -> str:
    """The result text of an outcome's template filled with its fields; ValueError names the problem."""
    if outcome.template is None:
        raise ValueError("the outcome names no result template")
    template = templates.get(outcome.template)
    if template is None:
        raise ValueError(f"unknown result template {outcome.template!r}; known: "
                         f"{', '.join(sorted(templates)) or 'none'}")
    given = {k for k, v in outcome.fields.items() if v.strip()}
    missing = sorted(template.fields - given)
    unknown = sorted(outcome.fields.keys() - template.fields)
    if missing or unknown:
        raise ValueError(f"result template {outcome.template!r} fields: "
                         + "; ".join(part for part in (f"missing {missing}" if missing else "",
                                                       f"not in the template {unknown}" if unknown else "")
                                     if part))
    text: str = getattr(template, language)
    return text.format_map(dict(outcome.fields))
