"""The console's action forms: which fields each action asks for, and a posted form turned into
the body the JSON API takes (``Desk.act``). Pure: no HTTP, database or clock.

A resolution's customer text is never typed: it is a policy template filled with fields
(``render_result``). A resolution whose compensation reaches the approval threshold needs an
``approved`` event on the case first; ``approved_by`` is then that approval's actor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from schemas.casework import Money, ResolutionOutcome, SolutionType
from services.common.resolution import ResolutionPolicy, ResultTemplate, render_result
from services.desk.handlers import Invalid

MEASURE_ROWS = 3
ASSIGNING = ("assigned", "transferred", "co_handler_added")
OUTCOMES = ("resolution_proposed", "resolved")
SOLUTIONS = tuple(s.value for s in SolutionType)
PARTIES = ("company", "customer", "third_party", "none", "undetermined")
CONTACT_KINDS = ("phone_callback", "visit", "chat")
PURPOSES = ("feedback", "revisit", "other")
DECISIONS = ("adopted", "declined")
# The order in which forms are offered on the case page (the work's usual order).
ORDER = ("assigned", "acknowledged", "plan_decided", "resolution_proposed", "approved", "resolved",
         "contacted", "awaiting_customer", "customer_replied", "note", "transferred", "co_handler_added",
         "suggestion_assessed", "reclassified", "satisfaction", "reopened", "closed")


def _text(form: Mapping[str, str], name: str) -> str | None:
    value = (form.get(name) or "").strip()
    return value or None


def _required(form: Mapping[str, str], name: str) -> str:
    value = _text(form, name)
    if value is None:
        raise Invalid(name, f"{name} is required")
    return value


def _int(form: Mapping[str, str], name: str) -> int | None:
    value = _text(form, name)
    if value is None:
        return None
    if not value.isdigit():
        raise Invalid(name, f"{name} must be a whole number")
    return int(value)


def pending_proposals(timeline: Sequence[Mapping[str, Any]], *, approver: str) -> list[dict[str, Any]]:
    """Resolution proposals of the case not yet approved, by someone other than ``approver``."""
    approved = {((e.get("summary") or {}).get("approval") or {}).get("proposal_event_id")
                for e in timeline if e.get("action") == "approved"}
    return [dict(e) for e in timeline if e.get("action") == "resolution_proposed"
            and e["event_id"] not in approved and e.get("actor") != approver]


def last_approval(timeline: Sequence[Mapping[str, Any]]) -> str | None:
    """The actor of the case's latest approval, if any."""
    actors = [e.get("actor") for e in timeline if e.get("action") == "approved"]
    return str(actors[-1]) if actors and actors[-1] else None


def template_fields(templates: Mapping[str, ResultTemplate]) -> list[str]:
    """Every placeholder any result template uses (the form offers one input for each)."""
    return sorted({name for t in templates.values() for name in t.fields})


def _outcome(action: str, form: Mapping[str, str], *, timeline: Sequence[Mapping[str, Any]],
             templates: Mapping[str, ResultTemplate], resolution: ResolutionPolicy | None,
             lang: str) -> dict[str, Any]:
    template_id = _text(form, "template")
    if action == "resolved" and template_id is None:
        raise Invalid("template", "choose a result template: the customer is told a policy text")
    template = templates.get(template_id) if template_id else None
    if template_id is not None and template is None:
        raise Invalid("template", f"unknown result template {template_id!r}")
    fields = {name: _required(form, f"field_{name}") for name in sorted(template.fields)} if template else {}
    amount = _text(form, "amount")
    compensation = None
    if amount is not None:
        try:
            compensation = {"amount": str(Decimal(amount)), "currency": _required(form, "currency").upper()}
        except InvalidOperation:
            raise Invalid("amount", "amount must be a number like 500.00") from None
    outcome = {"solution": _text(form, "solution"), "party_at_fault": _text(form, "party_at_fault"),
               "root_cause": _text(form, "root_cause"), "template": template_id, "fields": fields,
               "compensation": compensation}
    try:
        checked = ResolutionOutcome.model_validate(outcome)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(".".join(str(p) for p in first["loc"]) or "outcome", first["msg"]) from None
    if template is not None:
        try:
            result = render_result(checked, "zh" if lang == "zh" else "en", templates=templates)
        except ValueError as exc:
            raise Invalid("template", str(exc)) from None
    body: dict[str, Any] = {"outcome": outcome}
    if action == "resolved":
        body["result"] = result
        money = Money.model_validate(compensation) if compensation else None
        if resolution is not None and resolution.needs_approval(money):
            approver = last_approval(timeline)
            if approver is None:
                raise Invalid("amount", "the compensation needs an approval first (needs_approval)")
            outcome["approved_by"] = approver
    return body


def body_of(action: str, form: Mapping[str, str], *, timeline: Sequence[Mapping[str, Any]],
            templates: Mapping[str, ResultTemplate], resolution: ResolutionPolicy | None,
            lang: str) -> dict[str, Any]:
    """The JSON body of a posted action form (``Invalid`` names the field at fault)."""
    body: dict[str, Any] = {"action": action}
    note = _text(form, "note")
    if note is not None:
        body["note"] = note
    if action in ASSIGNING:
        body["assignment"] = {"handler": _text(form, "handler"), "department": _text(form, "department"),
                              "reason": _required(form, "reason")}
    elif action == "plan_decided":
        measures = []
        for i in range(MEASURE_ROWS):
            row = {k: _text(form, f"{k}_{i}") for k in ("description", "owner", "due")}
            if any(row.values()):
                measures.append({k: _required(form, f"{k}_{i}") for k in row})
        summary = _text(form, "summary")
        if summary is not None or measures:
            body["plan"] = {"summary": _required(form, "summary"), "measures": measures}
    elif action in OUTCOMES:
        body.update(_outcome(action, form, timeline=timeline, templates=templates,
                             resolution=resolution, lang=lang))
    elif action == "approved":
        body["approval"] = {"proposal_event_id": _required(form, "proposal")}
    elif action == "contacted":
        body["contact"] = {"kind": _text(form, "kind"), "purpose": _text(form, "purpose"),
                           "reached": form.get("reached") == "on", "score": _int(form, "score")}
    elif action == "suggestion_assessed":
        decision = _required(form, "decision")
        if decision not in DECISIONS:
            raise Invalid("decision", f"decision must be one of {', '.join(DECISIONS)}")
        reason = _required(form, "reason") if decision == "declined" else _text(form, "reason")
        body["assessment"] = {"decision": decision, "reason": reason, "measure": _text(form, "measure")}
    elif action == "reclassified":
        body["code"] = _required(form, "code")
    elif action == "satisfaction":
        body["score"] = _int(form, "score")
    elif action == "note" and note is None:
        raise Invalid("note", "note is required")
    return body
