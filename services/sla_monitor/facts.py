"""What a complaint's clocks are folded from, pure: its facts and its terms.

*Facts* are the routing decisions, case actions and notifications that concern a
complaint, each kept once under its event id (``facts_of``). The *terms* are the SLA
policy in force when the complaint is first routed, frozen into it (``terms_for``):
targets for its severity and code, clock kind, thresholds, signals, roles. Later policy
versions apply to new complaints only. The fold itself is ``logic``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.envelope import Envelope, Model
from schemas.events import (
    CaseEvent,
    ComplaintRouted,
    DecisionKind,
    Level,
    Milestone,
    Nature,
    NotificationEvent,
    Severity,
)
from services.common.policy import CONTACT_PURPOSES, SlaPolicy

ClockKind = Literal["calendar", "business"]


class Route(Model):
    """Who and what a routing decision names, for the alerts' addressees."""

    revision: int
    severity: Severity
    code: str | None
    owner: str
    handler: str | None
    department: str
    level: Level


class Fact(Model):
    """One input event as the clocks see it: the signals it raises at one instant."""

    id: str = Field(description="Event id (plus a suffix when one event raises two facts).")
    at: AwareDatetime
    signals: list[str]
    route: Route | None = None


class MilestoneTerms(Model):
    """One milestone's target, clock kind, warning thresholds, roles and signals."""

    target: timedelta
    clock: ClockKind
    thresholds: list[float]
    notify: list[str]
    start_on: list[str]
    stop_on: list[str]
    pause_on: list[str]
    resume_on: list[str]
    cancel_on: list[str]


class Terms(Model):
    """The complaint's milestones under the policy version it was routed with."""

    version: str
    severity: Severity
    code: str | None
    correlationid: str
    cause: str = Field(description="Id of the routing decision that fixed the terms.")
    milestones: dict[Milestone, MilestoneTerms]


def facts_of(event: Envelope) -> list[Fact]:
    """The facts an input event contributes (none for events the clocks ignore)."""
    if isinstance(event, ComplaintRouted):
        d = event.data
        route = Route(revision=d.revision, severity=d.severity, code=d.code,
                      owner=d.first_contact_owner, handler=d.handler, department=d.department,
                      level=d.level)
        facts = [Fact(id=f"{event.id}:route", at=event.time, signals=[], route=route)]
        if d.decision is DecisionKind.routed:
            facts.append(Fact(id=f"{event.id}:routed", at=d.received_at, signals=["routed"]))
        if d.handler is not None and not d.review:
            facts.append(Fact(id=f"{event.id}:assigned", at=event.time, signals=["assigned"]))
        return facts
    if isinstance(event, CaseEvent):
        signals, contact = [event.data.action.value], event.data.contact
        if contact is not None and contact.reached and contact.purpose in CONTACT_PURPOSES:
            signals.append(f"contacted:{contact.purpose}")  # the customer was told, or revisited
        return [Fact(id=event.id, at=event.time, signals=signals)]
    # only a notification a transport took is a notice: not one written to the file outbox
    # (``outboxed``: it reached nobody), held in doubt, failed or rate limited
    if isinstance(event, NotificationEvent) and event.data.status == "sent":
        return [Fact(id=event.id, at=event.time, signals=[f"notified:{event.data.kind.value}"])]
    return []


def terms_for(event: ComplaintRouted, *, policy: SlaPolicy, version: str, scale: float) -> Terms | None:
    """The terms a first routing decision fixes; None for praise and suggestions (no clocks)."""
    d = event.data
    if d.decision is not DecisionKind.routed or d.nature is not Nature.complaint:
        return None
    return Terms(version=version, severity=d.severity, code=d.code, correlationid=event.correlationid,
                 cause=event.id, milestones={
        m: MilestoneTerms(
            target=rule.target(d.severity, d.code) / scale, clock=rule.clock,
            thresholds=policy.thresholds(m), notify=list(rule.notify[d.severity]),
            start_on=rule.start_on, stop_on=rule.stop_on, pause_on=rule.pause_on,
            resume_on=rule.resume_on, cancel_on=rule.cancel_on)
        for m, rule in policy.milestones.items()})
