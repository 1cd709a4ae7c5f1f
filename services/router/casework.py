"""Staff moving a case, pure: an assignment, a transfer or a co-handler as a routing decision.

``assigned`` and ``transferred`` re-book the case: the handler it holds is released and the
named handler booked (whatever their load: staff chose them), or, with a department only,
the least-loaded on-duty handler of that department at the case's level, through the same
commit as every decision (``logic.book``, the Lua of ``adapters``). ``co_handler_added``
records a co-handler of another department in the decision and books nobody: the load
counts the case's one handler. Either way the new decision on ``complaints.routed`` tells
the SLA monitor and the notifier who handles the case now.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.casework import Assignment
from schemas.events import CaseAction, CaseEvent, CoHandler, DecisionKind, RoutingDecision
from services.common.errors import Rejected
from services.router.logic import HANDLER, HANDLER_REASON, Booking, Proposal
from services.router.roster import Roster

KINDS = {CaseAction.assigned: DecisionKind.assigned, CaseAction.transferred: DecisionKind.transferred,
         CaseAction.co_handler_added: DecisionKind.co_handler_added}


@dataclass(frozen=True)
class Assign:
    """Apply a staff assignment, transfer or co-handler once per ``triggers``."""

    triggers: tuple[str, ...]
    action: CaseAction
    assignment: Assignment
    actor: str


def work_effect(event: CaseEvent) -> Assign | None:
    """The assignment a lifecycle event carries; None for every other action."""
    update = event.data
    if update.action not in KINDS or update.assignment is None:
        return None
    return Assign((event.id,), update.action, update.assignment, update.actor)


def department_of(handler: str, roster: Roster) -> str | None:
    """The roster department that lists ``handler``; None if none does."""
    return next((d for d, hs in roster.departments.items() if any(h.id == handler for h in hs)), None)


def target(assignment: Assignment, current: RoutingDecision, *, roster: Roster) -> CoHandler:
    """The handler and department an assignment names, checked against the roster.

    A department must be a roster department; a named handler on the roster belongs to the
    department named with them (by default theirs). A handler the roster does not list is
    taken as named (staff may hand a case to anyone they may), in the department named, or
    the case's own.
    """
    department = assignment.department
    if department is not None and department not in roster.departments:
        raise Rejected(f"data.assignment.department: {department} is not a department of roster "
                       f"{roster.version}")
    listed = department_of(assignment.handler, roster) if assignment.handler else None
    if listed is not None and department is not None and listed != department:
        raise Rejected(f"data.assignment: handler {assignment.handler} is in department {listed}, "
                       f"not {department}")
    return CoHandler(handler=assignment.handler, department=department or listed or current.department)


def propose(current: RoutingDecision, work: Assign, *, roster: Roster) -> Proposal:
    """The decision a staff assignment, transfer or co-handler makes of the current one."""
    kind = KINDS[work.action]
    to = target(work.assignment, current, roster=roster)
    assert to.department is not None
    why = f"{kind.value} by {work.actor}: {work.assignment.reason}"
    base = {"decision": kind, "revision": current.revision + 1, "trigger": kind.value, "notify": []}
    if kind is DecisionKind.co_handler_added:
        co = [c for c in current.co_handlers if c != to] + [to]
        reasons = [why, f"co-handler {to.handler or '(department)'} of {to.department}"]
        return Proposal(current.model_copy(update={**base, "co_handlers": co, "reasons": reasons}), None)
    moved = to.department != current.department
    reasons = [why, *([f"department {current.department} -> {to.department}"] if moved else []),
               HANDLER_REASON]
    decision = current.model_copy(update={
        **base, "department": to.department, "review": False if moved else current.review,
        "handler": HANDLER, "reasons": reasons})
    return Proposal(decision, Booking(to.department, current.level, handler=to.handler))
