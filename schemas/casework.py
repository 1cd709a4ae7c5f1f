"""The structured work on a case, carried by ``CaseUpdate``: assignment, plan, outcome, approval, contact,
assessment.

Each is a frozen part of a ``case.updated`` event (complaints.lifecycle); which action needs
which part is checked by ``CaseUpdate`` itself (schemas/events.py).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from schemas.envelope import Model

CODE_PATTERN = r"^[A-Z]{2}-\d{2}$"
FIELD_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


StaffId = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
"""A staff id (the token's subject), never a name."""
Department = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_not_blank)]


class Assignment(Model):
    """Who takes the case (assigned, transferred) or joins it (co_handler_added), and why."""

    handler: StaffId | None = Field(default=None, description="Staff id of the handler.")
    department: Department | None = Field(
        default=None, description="Roster department; without a handler, the router books one of it.")
    reason: Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_not_blank)]

    @model_validator(mode="after")
    def _someone(self) -> Assignment:
        if self.handler is None and self.department is None:
            raise ValueError("an assignment names a handler, a department or both")
        return self


class CorrectiveMeasure(Model):
    """One corrective measure of a handling plan, with its owner and due date."""

    description: Annotated[str, Field(min_length=1, max_length=1_000), AfterValidator(_not_blank)]
    owner: StaffId = Field(description="Staff id responsible for the measure.")
    due: date = Field(description="Completion date agreed with the complainant.")


class HandlingPlan(Model):
    """The handling plan (处理方案): a summary and its corrective measures."""

    summary: Annotated[str, Field(min_length=1, max_length=5_000), AfterValidator(_not_blank)]
    measures: list[CorrectiveMeasure] = Field(default_factory=list, max_length=50)


class SolutionType(StrEnum):
    """How the case was solved (REQUIREMENTS §11)."""

    repair = "repair"
    replace_ = "replace"  # (str.replace is taken)
    return_ = "return"  # (a keyword)
    refund = "refund"
    software_fix = "software_fix"
    apology = "apology"
    explanation = "explanation"
    compensation = "compensation"
    other = "other"


class Money(Model):
    """An amount of money: never negative, two decimal places, an ISO 4217 currency."""

    amount: Decimal = Field(ge=0, max_digits=14, decimal_places=2,
                            description="At most two decimal places, e.g. 500.00.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. CNY.")

    @field_validator("amount")
    @classmethod
    def _two_places(cls, value: Decimal) -> Decimal:
        return value.quantize(Decimal("0.01"))


PartyAtFault = Literal["company", "customer", "third_party", "none", "undetermined"]


class ResolutionOutcome(Model):
    """The structured outcome of a resolution (proposed, or final on resolved)."""

    solution: SolutionType
    compensation: Money | None = None
    party_at_fault: PartyAtFault
    root_cause: str = Field(pattern=CODE_PATTERN, description="Root-cause taxonomy code, e.g. PQ-01.")
    template: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,63}$",
                                 description="Id of a policy result template (result_templates).")
    fields: dict[Annotated[str, Field(pattern=FIELD_NAME_PATTERN)],
                 Annotated[str, Field(max_length=500)]] = Field(
        default_factory=dict, max_length=20, description="Values of the template's placeholders.")
    approved_by: StaffId | None = Field(
        default=None, description="The approver, on the resolved event that follows an approval.")

    @model_validator(mode="after")
    def _consistent(self) -> ResolutionOutcome:
        if self.solution is SolutionType.compensation and self.compensation is None:
            raise ValueError("a compensation solution needs a compensation amount")
        if self.fields and self.template is None:
            raise ValueError("fields are the values of a template's placeholders: name the template")
        return self


class Approval(Model):
    """An approver's approval of a proposed resolution (the approver is the event's actor)."""

    proposal_event_id: str = Field(min_length=1, max_length=200,
                                   description="Id of the resolution_proposed event approved.")
    requester: StaffId = Field(description="The proposal's actor; never the approver (four-eyes).")


class ContactRecord(Model):
    """A contact with the customer: a phone call-back, a visit or a chat."""

    kind: Literal["phone_callback", "visit", "chat"]
    purpose: Literal["feedback", "revisit", "other"] = Field(
        description="feedback: the result told; revisit: the satisfaction revisit (回访).")
    reached: bool = Field(description="Whether the customer was reached.")
    score: int | None = Field(default=None, ge=1, le=5,
                              description="The satisfaction answer given during a revisit, 1-5.")

    @model_validator(mode="after")
    def _score_on_revisit(self) -> ContactRecord:
        if self.score is not None and not (self.purpose == "revisit" and self.reached):
            raise ValueError("a score is the answer of a revisit that reached the customer")
        return self


class SuggestionAssessment(Model):
    """The assessment of a suggestion (建议): adopted or declined, why, and what will change."""

    decision: Literal["adopted", "declined"]
    reason: Annotated[str, Field(min_length=1, max_length=2_000), AfterValidator(_not_blank)] | None = Field(
        default=None, description="Why; required when declined.")
    measure: Annotated[str, Field(min_length=1, max_length=2_000), AfterValidator(_not_blank)] | None = Field(
        default=None, description="What will change, when adopted.")

    @model_validator(mode="after")
    def _reasoned(self) -> SuggestionAssessment:
        if self.decision == "declined" and self.reason is None:
            raise ValueError("a declined suggestion needs a reason")
        return self
