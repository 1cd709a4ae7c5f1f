"""Routing rules: severity, department, level and owner of a complaint. No I/O."""

from __future__ import annotations

import re
from functools import lru_cache

from schemas.events import Complaint, RoutingDecision, Severity
from services.common.policy import KeywordRule, RouterPolicy
from services.router.ports import PriorComplaint


@lru_cache(maxsize=4096)
def _pattern(keyword: str) -> re.Pattern[str]:
    """Latin keywords match whole words ('app' not in 'happened'); CJK ones match anywhere."""
    escaped = re.escape(keyword.lower())
    return re.compile(rf"\b{escaped}\b" if keyword.isascii() else escaped)


def _matches(rule: KeywordRule, text: str) -> list[str]:
    return [k for k in rule.keywords if _pattern(k).search(text)]


_ORDER = {Severity.general: 0, Severity.urgent: 1, Severity.major: 2}


def route(complaint: Complaint, *, rules: RouterPolicy,
          prior: PriorComplaint | None = None) -> RoutingDecision:
    """Decide severity, handling department, level and first-contact owner, with reasons.

    ``prior`` is the customer's earlier complaint within the repeat window: its
    owner stays the customer's single point of contact, and a repeat is at least
    ``rules.repeat_severity``.
    """
    text = f"{complaint.subject}\n{complaint.description}".lower()
    reasons: list[str] = []
    severity = Severity.general
    for srule in rules.severity_rules:
        if hits := _matches(srule, text):
            severity = srule.severity
            reasons.append(f"severity {severity.value}: matched {', '.join(hits[:5])}")
            break
    else:
        reasons.append("severity general: no severity rule matched")
    repeat = prior is not None and prior.complaint_id != complaint.complaint_id
    if repeat and _ORDER[rules.repeat_severity] > _ORDER[severity]:
        severity = rules.repeat_severity
        reasons.append(f"severity {severity.value}: repeat complaint")
    department = rules.default_department
    for drule in rules.department_rules:
        if hits := _matches(drule, text):
            department = drule.department
            reasons.append(f"department {department}: matched {', '.join(hits[:5])}")
            break
    else:
        reasons.append(f"department {department}: default, no department rule matched")
    level = rules.levels[severity]
    reasons.append(f"level {level.value}: by severity {severity.value}")
    owner = complaint.first_contact
    if repeat and prior is not None:
        owner = prior.owner
        reasons.append(f"first-contact owner {owner}: owns the customer's earlier complaint "
                       f"{prior.complaint_id}")
    else:
        reasons.append(f"first-contact owner {owner}: received it first")
    return RoutingDecision(
        complaint_id=complaint.complaint_id, nature=complaint.nature,
        received_at=complaint.received_at, severity=severity, department=department, level=level,
        first_contact_owner=owner, repeat_of=prior.complaint_id if repeat and prior else None,
        reasons=reasons,
    )
