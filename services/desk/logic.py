"""The desk's rules: who may read and act on a case, the customer key of a search, the case
page. Pure functions over plain values; no database, HTTP, faust or clock.

A person's roles come from their token; what each role reaches (scopes) and may do (actions)
from the policy's ``staff`` section. Every decision is ``Allowed`` or ``Refused`` naming the
rule that refused:

    known_role       the token names no role of the policy
    case_scope       none of the person's roles reaches the case
    read_only        the roles that reach it may only read (auditors)
    role_actions     the roles that reach it may not take this action
    take_unassigned  an unassigned case of one's department may only be taken (assigned to oneself)
    four_eyes        an approver approving their own proposal
    approver_role    an approval by someone with no role of resolution.approver_roles
    approval_required a resolution whose compensation reaches resolution.approval_above, with no
                     archived approval of a proposal covering it by someone other than its proposer
    report_roles     reading the reports needs one of staff.report_roles
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from schemas.casework import Money, ResolutionOutcome
from services.common.policy import StaffPolicy, StaffRole
from services.common.resolution import ResolutionPolicy, ResultTemplate, render_result
from services.desk.auth import Identity

OPEN_STATUSES = ("open", "awaiting_customer", "reopened")
TAKE = "assigned"
# actions that only fit a case of one nature: a suggestion is assessed (adopted or declined)
NATURE_OF_ACTION = {"suggestion_assessed": "suggestion"}


@dataclass(frozen=True)
class CaseFacts:
    """What permission needs to know of a case."""

    complaint_id: str
    handler: str | None
    department: str | None
    review: bool = False
    co_handlers: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ActionRequest:
    """What permission needs to know of an action: its name and whom it names."""

    action: str
    assign_handler: str | None = None
    requester: str | None = None  # an approval's: the proposal's actor


@dataclass(frozen=True)
class Allowed:
    """Permitted, through this role and scope."""

    role: str
    scope: str


@dataclass(frozen=True)
class Refused:
    """Refused by the named rule, with a detail a person can act on."""

    rule: str
    detail: str


Decision = Allowed | Refused


def reaches(scope: str, who: Identity, case: CaseFacts) -> bool:
    """Whether one scope covers the case for this person."""
    if scope == "all":
        return True
    if scope == "review":
        return case.review
    if scope == "booked":
        return case.handler == who.sub or who.sub in case.co_handlers
    same_department = who.department is not None and case.department == who.department
    if scope == "department":
        return same_department
    if scope == "department_unassigned":
        return same_department and case.handler is None
    raise ValueError(f"unknown scope {scope!r}")


def _roles(who: Identity, staff: StaffPolicy) -> list[tuple[str, StaffRole]]:
    return [(name, staff.roles[name]) for name in dict.fromkeys(who.roles) if name in staff.roles]


Reach = list[tuple[str, StaffRole, str]]


def _reaching(who: Identity, case: CaseFacts, staff: StaffPolicy) -> Reach | Refused:
    roles = _roles(who, staff)
    if not roles:
        return Refused("known_role", f"the token's roles {list(who.roles)} are none of the policy's "
                                     f"({', '.join(staff.roles)})")
    pairs: Reach = [(name, role, str(scope)) for name, role in roles for scope in role.scopes
                    if reaches(scope, who, case)]
    if not pairs:
        scopes = "; ".join(f"{name}: {', '.join(role.scopes)}" for name, role in roles)
        return Refused("case_scope", f"case {case.complaint_id} is outside what your roles reach ({scopes})")
    return pairs


def may_read(who: Identity, case: CaseFacts, *, staff: StaffPolicy) -> Decision:
    """Whether the person may read the case."""
    pairs = _reaching(who, case, staff)
    if isinstance(pairs, Refused):
        return pairs
    name, _, scope = pairs[0]
    return Allowed(role=name, scope=scope)


def may_act(who: Identity, case: CaseFacts, request: ActionRequest, *, staff: StaffPolicy,
            approver_roles: Iterable[str] | None = None) -> Decision:
    """Whether the person may take the action on the case (approvals: four-eyes and approver role)."""
    pairs = _reaching(who, case, staff)
    if isinstance(pairs, Refused):
        return pairs
    allowed: Allowed | None = None
    take_only = False
    for name, role, scope in pairs:
        if request.action not in role.actions and "*" not in role.actions:
            continue
        if scope == "department_unassigned" and not (
                request.action == TAKE and request.assign_handler == who.sub):
            take_only = True
            continue
        allowed = allowed or Allowed(role=name, scope=scope)
    if allowed is None:
        if take_only:
            return Refused("take_unassigned", f"case {case.complaint_id} is unassigned in your department: "
                                              f"take it first (assigned, with yourself as handler)")
        if all(not role.actions for _, role, _ in pairs):
            return Refused("read_only", f"your roles ({', '.join(n for n, _, _ in pairs)}) may read "
                                        f"case {case.complaint_id}, not act on it")
        return Refused("role_actions", f"your roles ({', '.join(sorted({n for n, _, _ in pairs}))}) "
                                       f"may not take the action {request.action!r} on this case")
    if request.action == "approved":
        if request.requester == who.sub:
            return Refused("four_eyes", "the approver must not be the person who proposed the resolution")
        roles = set(approver_roles) if approver_roles is not None else None
        if roles is not None and not roles & set(who.roles):
            return Refused("approver_role", f"approving a resolution needs one of the roles "
                                            f"{sorted(roles)}")
    return allowed


def permitted_actions(who: Identity, case: CaseFacts, actions: Sequence[str], *,
                      staff: StaffPolicy) -> list[str]:
    """The actions this person may take on the case (an approval still needs four-eyes)."""
    out = []
    for action in actions:
        request = ActionRequest(action, assign_handler=who.sub if action == TAKE else None)
        if isinstance(may_act(who, case, request, staff=staff), Allowed):
            out.append(action)
    return out


def fits_nature(action: str, nature: str | None) -> bool:
    """Whether the action fits a case of this nature (an assessment only a suggestion)."""
    wanted = NATURE_OF_ACTION.get(action)
    return wanted is None or nature == wanted


def nature_problem(action: str, complaint_id: str, nature: str | None) -> str | None:
    """Why the action does not fit the case's nature (the detail of a 409); None when it does."""
    if fits_nature(action, nature):
        return None
    if nature is None:
        return (f"the archive does not know the nature of case {complaint_id} yet: "
                f"{action} is only taken on a {NATURE_OF_ACTION[action]}")
    return f"case {complaint_id} is a {nature}: {action} is only taken on a {NATURE_OF_ACTION[action]}"


def may_read_reports(who: Identity, *, staff: StaffPolicy) -> Decision:
    """Whether the person may read the reports (staff.report_roles)."""
    role = next((r for r in who.roles if r in staff.report_roles), None)
    if role is None:
        return Refused("report_roles", f"reading the reports needs one of the roles {staff.report_roles}")
    return Allowed(role=role, scope="reports")


def _cycle(timeline: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The case events since the last reopening (an approval before it no longer counts)."""
    work = [e for e in timeline if e.get("type") == "case.updated"]
    last = max((i for i, e in enumerate(work) if e.get("action") == "reopened"), default=-1)
    return work[last + 1:]


def _money(summary: Any) -> Money | None:
    outcome = summary.get("outcome") if isinstance(summary, Mapping) else None
    money = outcome.get("compensation") if isinstance(outcome, Mapping) else None
    return Money.model_validate(money) if isinstance(money, Mapping) else None


def _covers(approved: Money | None, wanted: Money | None) -> bool:
    if wanted is None:
        return True
    return approved is not None and approved.currency == wanted.currency and approved.amount >= wanted.amount


def resolution_compensation(outcome: ResolutionOutcome | None,
                            timeline: Sequence[Mapping[str, Any]]) -> Money | None:
    """The compensation a resolution grants: its own outcome's, else the latest proposal's."""
    if outcome is not None:
        return outcome.compensation
    proposals = [e for e in _cycle(timeline) if e.get("action") == "resolution_proposed"]
    return _money(proposals[-1].get("summary")) if proposals else None


def archived_approver(compensation: Money | None, timeline: Sequence[Mapping[str, Any]]) -> str | None:
    """The approver of the latest archived approval (this cycle) of a proposal that covers the
    compensation, given by someone other than the proposal's actor; None if there is none."""
    events = _cycle(timeline)
    proposals = {e.get("event_id"): e for e in events if e.get("action") == "resolution_proposed"}
    for e in reversed(events):
        approval = (e.get("summary") or {}).get("approval") if e.get("action") == "approved" else None
        proposal = proposals.get(approval.get("proposal_event_id")) if isinstance(approval, Mapping) else None
        if proposal is not None and e.get("actor") != proposal.get("actor") \
                and _covers(_money(proposal.get("summary")), compensation):
            return str(e.get("actor"))
    return None


def may_resolve(compensation: Money | None, approver: str | None, *,
                resolution: ResolutionPolicy) -> Decision:
    """Four-eyes on compensation: at or above resolution.approval_above needs an archived approval."""
    if not resolution.needs_approval(compensation) or approver is not None:
        return Allowed(role="resolution", scope="approved" if approver else "below_threshold")
    assert compensation is not None  # needs_approval(None) is False
    limit = resolution.approval_above.get(compensation.currency)
    threshold = f"{limit} {compensation.currency}" if limit is not None else \
        f"any amount in {compensation.currency}"
    return Refused("approval_required", f"a compensation of {compensation.amount} {compensation.currency} "
                                        f"reaches the approval threshold ({threshold}): propose it "
                                        f"(resolution_proposed) and have someone else of "
                                        f"{resolution.approver_roles} approve it first (an approval "
                                        f"just given may take a moment to reach the archive)")


def template_problem(outcome: ResolutionOutcome | None, *,
                     templates: Mapping[str, ResultTemplate]) -> tuple[str, str] | None:
    """(field, problem) when the outcome's result template would not render; None when it does."""
    if outcome is None or outcome.template is None:
        return None
    languages: tuple[Literal["zh", "en"], ...] = ("zh", "en")
    for language in languages:
        try:
            render_result(outcome, language, templates=templates)
        except ValueError as exc:
            field = "outcome.template" if outcome.template not in templates else "outcome.fields"
            return field, str(exc)
    return None


def deadline_state(outcome: str, deadline: datetime | None, *, now: datetime, due_soon_seconds: float) -> str:
    """An SLA row as the desk shows it: met, breached, cancelled, overdue, due_soon, running, paused."""
    if outcome != "open":
        return outcome
    if deadline is None:
        return "paused"
    left = (deadline - now).total_seconds()
    if left < 0:
        return "overdue"
    return "due_soon" if left <= due_soon_seconds else "running"


def co_handlers(events: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Staff who joined a case as co-handlers, from its archived events (action and summary)."""
    found = set()
    for e in events:
        if e.get("action") == "co_handler_added":
            assignment = (e.get("summary") or {}).get("assignment") or {}
            if isinstance(assignment, Mapping) and isinstance(assignment.get("handler"), str):
                found.add(assignment["handler"])
    return frozenset(found)


def page(items: list[dict[str, Any]], *, limit: int, offset: int) -> dict[str, Any]:
    """A page of a list read with ``limit + 1`` rows: the items and the next offset, if any."""
    more = len(items) > limit
    return {"items": items[:limit], "limit": limit, "offset": offset,
            "next_offset": offset + limit if more else None}


def customer_key_of(text: str, *, region: str, secret: bytes) -> str:
    """The keyed identity intake gives a customer with this phone number or e-mail address.

    Normalised as intake does (E.164 phone in the policy's default region, lower-case e-mail);
    ValueError when the text is neither. The key matches complaints keyed on that identifier
    (intake keys on the phone when a complaint carries both).
    """
    from schemas.events import Contact
    from services.intake.logic import customer_key, normalise_email, normalise_phone

    text = text.strip()
    if "@" in text:
        email = normalise_email(text)
        if email is None:
            raise ValueError("customer: not a valid e-mail address")
        contact = Contact(email=email)
    else:
        phone = normalise_phone(text, region=region)
        if phone is None:
            raise ValueError("customer: not a valid phone number or e-mail address")
        contact = Contact(phone=phone)
    return customer_key(contact, account=None, secret=secret)
