"""Routing rules: code, severity, department, level, owner and escalation of a complaint. No I/O.

Every function here returns a ``Plan``: the next routing decision (a full snapshot with
its reasons) and, when a handler must be booked, which department and level to book
in. Booking itself is done atomically in Redis (``services.router.adapters``), which
puts the chosen handler into the decision where the ``HANDLER`` tokens stand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from schemas.events import (
    Complaint,
    DecisionKind,
    Level,
    Nature,
    RoutingDecision,
    Severity,
)
from services.common.errors import Rejected
from services.common.policy import RouterPolicy, SeverityPolicy
from services.router.classify import Classification, classify, fold, found
from services.router.ports import PriorComplaint
from services.router.taxonomy import Taxonomy

HANDLER = "@@handler@@"
"""Stands for the booked handler's id in a planned decision; replaced when booked."""
HANDLER_REASON = "@@handler-reason@@"
"""Stands for the booking's reason in a planned decision; replaced when booked."""

_ORDER = {Severity.general: 0, Severity.urgent: 1, Severity.major: 2}
_NEXT = {Level.L1: Level.L2, Level.L2: Level.L3}

_NUMBER = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
_AMOUNTS: list[tuple[re.Pattern[str], str, float]] = [
    (re.compile(rf"[¥￥]\s*{_NUMBER}"), "CNY", 1),
    (re.compile(rf"{_NUMBER}\s*万\s*(?:元|块|人民币)"), "CNY", 10_000),
    (re.compile(rf"{_NUMBER}\s*(?:元|块钱|人民币)"), "CNY", 1),
    (re.compile(rf"\b(?:rmb|cny)\s*{_NUMBER}"), "CNY", 1),
    (re.compile(rf"{_NUMBER}\s*(?:rmb|cny|yuan)\b"), "CNY", 1),
    (re.compile(rf"\$\s*{_NUMBER}"), "USD", 1),
    (re.compile(rf"\busd\s*{_NUMBER}"), "USD", 1),
    (re.compile(rf"{_NUMBER}\s*(?:usd|dollars)\b"), "USD", 1),
    (re.compile(rf"€\s*{_NUMBER}"), "EUR", 1),
    (re.compile(rf"\beur\s*{_NUMBER}"), "EUR", 1),
    (re.compile(rf"{_NUMBER}\s*(?:eur|euros?)\b"), "EUR", 1),
]


@dataclass(frozen=True)
class Booking:
    """Book the least-loaded on-duty handler of ``department`` at ``level``."""

    department: str
    level: Level
    keep: bool = False  # keep the handler the case holds, if it holds one


@dataclass(frozen=True)
class Plan:
    """The next decision; with a booking, its handler and handler reason are tokens."""

    decision: RoutingDecision
    booking: Booking | None


def amounts_in(text: str) -> dict[str, float]:
    """The largest amount per currency written in ``text`` (already folded by ``fold``)."""
    best: dict[str, float] = {}
    for regex, currency, factor in _AMOUNTS:
        for m in regex.finditer(text):
            value = float(m.group(1).replace(",", "")) * factor
            best[currency] = max(best.get(currency, 0.0), value)
    return best


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def assess(complaint: Complaint, rules: SeverityPolicy, *, repeat: bool) -> tuple[Severity, list[str]]:
    """Severity from every signal found (REQUIREMENTS §5), with one reason per signal."""
    text = fold(f"{complaint.subject}\n{complaint.description}")
    signals: list[tuple[Severity, str]] = []
    for signal in rules.keywords:
        hits = [k for k in signal.keywords if found(k, text)]
        if hits:
            signals.append((signal.severity, f"{signal.signal} ({', '.join(hits[:5])})"))
    details = complaint.details
    audience = _number(details.get("audience"))
    if audience is not None and details.get("public", True) is not False:
        if sev := rules.public_audience.severity(audience):
            signals.append((sev, f"public exposure (audience {int(audience)})"))
    affected = _number(details.get("affected"))
    if affected is not None and (sev := rules.affected_customers.severity(affected)):
        signals.append((sev, f"many customers affected ({int(affected)})"))
    amounts = amounts_in(text)
    if (amount := _number(details.get("amount"))) is not None:
        currency = str(details.get("currency") or rules.default_currency).upper()
        amounts[currency] = max(amounts.get(currency, 0.0), amount)
    for currency, value in sorted(amounts.items()):
        threshold = rules.amounts.get(currency)
        if threshold and (sev := threshold.severity(value)):
            signals.append((sev, f"amount {value:,.0f} {currency}"))
    tier = details.get("tier")
    if isinstance(tier, str) and tier.lower() in {t.lower() for t in rules.vip_tiers}:
        signals.append((rules.vip_severity, f"VIP customer (tier {tier.lower()})"))
    if repeat:
        signals.append((rules.repeat_severity, "repeat complaint within the window"))
    if not signals:
        return Severity.general, ["severity general: no severity signal"]
    severity = max((s for s, _ in signals), key=_ORDER.__getitem__)
    reasons = [f"severity {severity.value}: " + "; ".join(
        f"{why} -> {s.value}" for s, why in sorted(signals, key=lambda f: -_ORDER[f[0]]))]
    return severity, reasons


def _code_reasons(result: Classification, taxonomy: Taxonomy, *, review: bool,
                  review_department: str) -> list[str]:
    ctype = taxonomy.get(result.code)
    why = (f"matched {', '.join(result.matched[:6])}" if result.matched
           else "no keyword matched (fallback)")
    reasons = [f"code {ctype.code} {ctype.name_en} / {ctype.name_zh}: confidence "
               f"{result.confidence:.2f}, {why}"]
    if review:
        reasons.append(f"review: confidence {result.confidence:.2f} below "
                       f"{taxonomy.review_threshold}; queued to {review_department} "
                       f"(the code's department would be {ctype.department})")
    return reasons


def first_route(complaint: Complaint, *, rules: RouterPolicy, taxonomy: Taxonomy,
                prior: PriorComplaint | None = None) -> Plan:
    """The first decision for a registered complaint.

    ``prior`` is the customer's anchor complaint within the repeat window: its owner
    stays the customer's single point of contact (首接负责制) and the repeat is a
    severity signal.
    """
    repeat = prior is not None and prior.complaint_id != complaint.complaint_id
    result = classify(f"{complaint.subject}\n{complaint.description}", taxonomy=taxonomy)
    ctype = taxonomy.get(result.code)
    review = result.needs_review(taxonomy.review_threshold)
    department = rules.review_department if review else ctype.department
    severity, reasons = assess(complaint, rules.severity, repeat=repeat)
    reasons += _code_reasons(result, taxonomy, review=review, review_department=rules.review_department)
    level = rules.levels[severity]
    reasons.append(f"level {level.value}: by severity {severity.value}")
    owner = complaint.first_contact
    if repeat and prior is not None:
        owner = prior.owner
        reasons.append(f"first-contact owner {owner}: owns the customer's earlier complaint "
                       f"{prior.complaint_id}")
    else:
        reasons.append(f"first-contact owner {owner}: received it first")
    booking: Booking | None = Booking(department, level)
    handler: str | None = HANDLER
    if complaint.nature is Nature.praise:
        booking, handler = None, None
        reasons.append("handler: none, praise is thanked and recorded")
    else:
        reasons.append(HANDLER_REASON)
    notify = list(rules.notify[level])
    if notify:
        reasons.append(f"notify {', '.join(notify)} at once: routed at {level.value}")
    decision = RoutingDecision(
        complaint_id=complaint.complaint_id, decision=DecisionKind.routed, revision=1,
        nature=complaint.nature, received_at=complaint.received_at, code=ctype.code,
        code_name_zh=ctype.name_zh, code_name_en=ctype.name_en, confidence=result.confidence,
        matched_terms=result.matched, review=review, severity=severity, department=department,
        level=level, handler=handler, first_contact_owner=owner,
        repeat_of=prior.complaint_id if repeat and prior else None, notify=notify,
        reasons=reasons,
    )
    return Plan(decision, booking)


def escalate(current: RoutingDecision, *, trigger: str, why: str, rules: RouterPolicy) -> Plan:
    """One level up (L1 -> L2 -> L3); at L3, the ceiling, executives are told instead."""
    nxt = _NEXT.get(current.level)
    if nxt is None:
        notify = list(rules.notify[Level.L3])
        decision = current.model_copy(update={
            "decision": DecisionKind.at_ceiling, "revision": current.revision + 1,
            "trigger": trigger, "notify": notify, "handler": HANDLER,
            "reasons": [f"{why}: already at L3, the ceiling; level kept, "
                        f"{', '.join(notify) or 'nobody'} notified", HANDLER_REASON]})
        # a reopened case may have released its handler: book one again if so
        return Plan(decision, Booking(current.department, Level.L3, keep=True))
    notify = list(rules.notify[nxt])
    reasons = [f"escalated {current.level.value} -> {nxt.value}: {why}"]
    if notify:
        reasons.append(f"notify {', '.join(notify)}")
    reasons.append(HANDLER_REASON)
    decision = current.model_copy(update={
        "decision": DecisionKind.escalated, "revision": current.revision + 1, "level": nxt,
        "handler": HANDLER, "trigger": trigger, "notify": notify, "reasons": reasons})
    return Plan(decision, Booking(current.department, nxt))


def reclassify(current: RoutingDecision, *, code: str, actor: str, taxonomy: Taxonomy) -> Plan:
    """A reviewer's code: the case moves to that code's department at its current level."""
    try:
        ctype = taxonomy.get(code)
    except KeyError:
        raise Rejected(f"data.code: {code} is not a code of taxonomy {taxonomy.version}") from None
    reasons = [f"reclassified by {actor}: {current.code} -> {ctype.code} {ctype.name_en} / "
               f"{ctype.name_zh}; department {ctype.department}"]
    update: dict[str, Any] = {
        "decision": DecisionKind.reclassified, "revision": current.revision + 1,
        "code": ctype.code, "code_name_zh": ctype.name_zh, "code_name_en": ctype.name_en,
        "confidence": 1.0, "matched_terms": [], "review": False, "department": ctype.department,
        "trigger": "reclassified", "notify": [],
    }
    reasons.append(HANDLER_REASON)
    decision = current.model_copy(update={**update, "handler": HANDLER, "reasons": reasons})
    # the same department keeps the case's handler; another books one of its own
    return Plan(decision, Booking(ctype.department, current.level,
                                  keep=ctype.department == current.department))
