"""The archive's rules: a case's rows as a pure fold of its archived events. No I/O.

Every fold is deterministic under any order and any repetition of its input: events are
de-duplicated by id and sorted by (event time, event id); a routing decision counts by its
revision, "latest" answers by event time, and a milestone's outcome by precedence (met, then
breached, then cancelled), not by arrival.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from schemas.events import CaseAction, DecisionKind, Level, SlaOutcome
from services.archive.history import history_lines as history_lines
from services.archive.records import CONTACT_ORDER, ArchivedEvent, CaseRow, JsonValue, NotificationRow, SlaRow

__all__ = ["fold", "fold_case", "fold_notifications", "fold_sla", "history_lines", "ordered",
           "retention_cutoff"]

_LEVELS = [lv.value for lv in Level]
# what each case action makes of the case's status (notes, satisfaction, reclassified: nothing)
_STATUS = {
    CaseAction.acknowledged: "open", CaseAction.plan_decided: "open",
    CaseAction.customer_replied: "open", CaseAction.awaiting_customer: "awaiting_customer",
    CaseAction.resolved: "resolved", CaseAction.reopened: "reopened", CaseAction.closed: "closed",
}
_FINAL_NOTIFICATION = frozenset({"sent", "outboxed", "failed", "rate_limited", "cancelled",
                                 "callback_required"})


def ordered(events: Iterable[ArchivedEvent]) -> list[ArchivedEvent]:
    """Events de-duplicated by id, in trail order (event time, then id)."""
    return sorted({e.event_id: e for e in events}.values(), key=ArchivedEvent.key)


def fold(events: Iterable[ArchivedEvent]) -> tuple[CaseRow, list[SlaRow], list[NotificationRow]]:
    """Every row of one complaint from its events."""
    trail = ordered(events)
    return fold_case(trail), fold_sla(trail), fold_notifications(trail)


def fold_case(events: Iterable[ArchivedEvent]) -> CaseRow:
    """The case row of one complaint (whatever subset of its events has arrived)."""
    trail = ordered(events)
    if not trail:
        raise ValueError("no events to fold")
    row: dict[str, JsonValue] = {"complaint_id": trail[0].complaint_id, "status": "open"}
    by_type: dict[str, list[ArchivedEvent]] = {}
    for e in trail:
        by_type.setdefault(e.type, []).append(e)
    routed = by_type.get("complaint.routed", [])
    if routed:  # a snapshot: the highest revision stands
        first = routed[0].summary  # nature and receipt: the registration's, once it has come
        row.update(nature=first.get("nature"), received_at=_at(first.get("received_at")))
        latest = max(routed, key=lambda e: (int(e.summary["revision"]), e.key()))
        _routing(row, latest.summary)
        row["highest_level"] = max((str(e.summary["level"]) for e in routed), key=_LEVELS.index)
        row["escalation_count"] = sum(e.action == DecisionKind.escalated for e in routed)
    for e in by_type.get("complaint.registered", [])[:1]:
        _registration(row, e)
    _case_actions(row, by_type.get("case.updated", []))
    alerts = by_type.get("sla.alert", [])
    if alerts:
        row["policy_version"] = alerts[-1].summary.get("policy_version")
    row["event_count"] = len(trail)
    row["last_event_time"] = trail[-1].time
    return CaseRow(**row)


def _routing(row: dict[str, JsonValue], s: dict[str, JsonValue]) -> None:
    row.update(
        first_contact_owner=s.get("first_contact_owner"), code=s.get("code"),
        code_name_zh=s.get("code_name_zh"), code_name_en=s.get("code_name_en"),
        department=s.get("department"), severity=s.get("severity"), level=s.get("level"),
        handler=s.get("handler"), review=bool(s.get("review")), repeat_of=s.get("repeat_of"),
        routed_revision=s.get("revision"))


def _registration(row: dict[str, JsonValue], e: ArchivedEvent) -> None:
    s = e.summary
    contact = s.get("contact_masked") or {}
    row.update(
        channel=s.get("channel"), nature=s.get("nature"), language=s.get("language"),
        received_at=_at(s.get("received_at")), registered_at=e.time,
        customer_key=s.get("customer_key"),
        contact_masked=", ".join(contact[k] for k in CONTACT_ORDER if k in contact) or None,
        demand=s.get("demand"), product=s.get("product"), store_id=s.get("store_id"))
    if row.get("first_contact_owner") is None:
        row["first_contact_owner"] = s.get("first_contact")


def _case_actions(row: dict[str, JsonValue], events: list[ArchivedEvent]) -> None:
    for e in events:  # in trail order: the last word wins
        action = CaseAction(e.action)
        if action in _STATUS:
            row["status"] = _STATUS[action]
        if action is CaseAction.acknowledged and row.get("acknowledged_at") is None:
            row["acknowledged_at"] = e.time  # the first response counts
        elif action is CaseAction.plan_decided:
            row["plan_decided_at"] = e.time
        elif action is CaseAction.resolved:
            row.update(resolved_at=e.time, result=e.summary.get("result"))
        elif action is CaseAction.closed:
            row["closed_at"] = e.time
        elif action is CaseAction.reopened:
            row["reopen_count"] = int(row.get("reopen_count") or 0) + 1
        elif action is CaseAction.satisfaction:
            row.update(satisfaction_score=e.summary.get("score"), satisfaction_at=e.time)
        _work(row, action, e)


def _work(row: dict[str, JsonValue], action: CaseAction, e: ArchivedEvent) -> None:
    """Fold the structured work of a case event: co-handlers, plan, outcome, approval, contact,
    a suggestion's assessment."""
    s = e.summary
    if action is CaseAction.co_handler_added and isinstance(s.get("assignment"), dict):
        a = s["assignment"]
        entry = f"{a.get('handler') or ''}@{a.get('department') or ''}"
        added = [c for c in str(row.get("co_handlers") or "").split(", ") if c and c != entry]
        row["co_handlers"] = ", ".join([*added, entry])
    if isinstance(plan := s.get("plan"), dict):
        row["plan_measures"] = len(plan.get("measures") or [])
    if isinstance(o := s.get("outcome"), dict):  # proposed, then final: the last word wins
        money = o.get("compensation") or {}
        row.update(solution=o.get("solution"), party_at_fault=o.get("party_at_fault"),
                   root_cause=o.get("root_cause"), compensation_currency=money.get("currency"),
                   compensation_amount=Decimal(money["amount"]) if "amount" in money else None)
        if action is CaseAction.resolved:
            row["approved_by"] = o.get("approved_by") or row.get("approved_by")
    if action is CaseAction.approved:
        row["approved_by"] = e.actor
    elif action is CaseAction.reopened:
        row["approved_by"] = None  # a new resolution needs its own approval
    if isinstance(c := s.get("contact"), dict):
        row.update(last_contact_at=e.time, last_contact_kind=c.get("kind"),
                   last_contact_purpose=c.get("purpose"), last_contact_reached=c.get("reached"))
        if c.get("score") is not None:  # the satisfaction answer, given on a revisit contact
            row.update(satisfaction_score=c["score"], satisfaction_at=e.time)
    if action is CaseAction.suggestion_assessed and isinstance(a := s.get("assessment"), dict):
        row.update(assessment_decision=a.get("decision"), assessment_reason=a.get("reason"),
                   assessed_at=e.time, assessed_by=e.actor)  # a later assessment replaces it


def fold_sla(events: Iterable[ArchivedEvent]) -> list[SlaRow]:
    """One row per (milestone, cycle) of one complaint's SLA alerts, by milestone then cycle."""
    clocks: dict[tuple[str, int], list[ArchivedEvent]] = {}
    for e in ordered(events):
        if e.type == "sla.alert":
            clocks.setdefault((str(e.summary["milestone"]), int(e.summary["cycle"])), []).append(e)
    return [_sla_row(milestone, cycle, alerts) for (milestone, cycle), alerts in sorted(clocks.items())]


def _sla_row(milestone: str, cycle: int, alerts: list[ArchivedEvent]) -> SlaRow:
    def first(outcome: SlaOutcome) -> ArchivedEvent | None:
        return min((a for a in alerts if a.action == outcome),
                   key=lambda a: (_at(a.summary.get("observed_at")) or a.time, a.event_id), default=None)

    latest = alerts[-1].summary
    started, met, breached, cancelled = (first(o) for o in (
        SlaOutcome.started, SlaOutcome.met, SlaOutcome.breached, SlaOutcome.cancelled))
    outcome, on_time = "open", None
    if met is not None:
        outcome, on_time = "met", bool(met.summary.get("on_time"))
    elif breached is not None:
        outcome, on_time = "breached", False
    elif cancelled is not None:
        outcome = "cancelled"
    start = (started or alerts[0]).summary.get("started_at")
    return SlaRow(
        complaint_id=alerts[0].complaint_id, milestone=milestone, cycle=cycle,
        severity=_str(latest.get("severity")), clock=_str(latest.get("clock")),
        started_at=_at(start), deadline=_at(latest.get("deadline")), outcome=outcome,
        on_time=on_time, met_at=_observed(met), breached_at=_observed(breached),
        cancelled_at=_observed(cancelled), policy_version=_str(latest.get("policy_version")),
        warnings=sum(a.action == SlaOutcome.warning for a in alerts), last_event_time=alerts[-1].time)


def fold_notifications(events: Iterable[ArchivedEvent]) -> list[NotificationRow]:
    """One row per notification of one complaint, by notification id."""
    steps: dict[str, list[ArchivedEvent]] = {}
    for e in ordered(events):
        if e.type == "notification.recorded":
            steps.setdefault(str(e.summary["notification_id"]), []).append(e)
    return [_notification_row(nid, records) for nid, records in sorted(steps.items())]


def _notification_row(notification_id: str, records: list[ArchivedEvent]) -> NotificationRow:
    final = [r for r in records if r.action in _FINAL_NOTIFICATION]
    status = (final or records)[-1].action  # a final step stands, whatever came after it
    latest = records[-1].summary
    queued = [r.time for r in records if r.action == "queued"]
    sent = [r.time for r in records if r.action == "sent"]
    return NotificationRow(
        notification_id=notification_id, complaint_id=records[0].complaint_id,
        kind=str(latest["kind"]), role=str(latest.get("role")), transport=str(latest.get("transport")),
        recipient=str(latest.get("recipient")), language=str(latest.get("language")), status=status,
        attempts=max(int(r.summary.get("attempt") or 0) for r in records),
        queued_at=queued[0] if queued else None, sent_at=sent[0] if sent else None,
        updated_at=records[-1].time)


def retention_cutoff(now: datetime, *, years: int) -> datetime:
    """The instant ``years`` calendar years before ``now`` (29 February -> 28 February)."""
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


def _at(value: JsonValue) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def _observed(alert: ArchivedEvent | None) -> datetime | None:
    return None if alert is None else _at(alert.summary.get("observed_at")) or alert.time


def _str(value: JsonValue) -> str | None:
    return None if value is None else str(value)


def advance_case(row: CaseRow, later: Iterable[ArchivedEvent]) -> CaseRow | None:
    """The case row after events it does not hold yet (new to the archive), without its trail.

    Equal to ``fold_case`` of the whole trail (property tests hold them together); None when
    the step cannot be taken safely from the row alone, and the caller then folds the whole
    trail. New events after the row's last event always can be; events at or before it
    (arrival out of order: the topics of a backlog are read at different paces) only when
    they commute with what the row holds: a notification record (no field of the row), an
    SLA alert of the row's policy version (or the first alert of the case), a registration
    when the row has none. A late routing decision or case event, or a routing decision
    without a first-contact owner over a registration (whose owner the row does not keep),
    asks for the trail.
    """
    new = ordered(later)
    last = row.last_event_time
    if not new or last is None:
        return None
    if any(not _commutes(row, e) for e in new if e.time <= last):
        return None
    d: dict[str, JsonValue] = {f: getattr(row, f) for f in row.__dataclass_fields__}
    routed = [e for e in new if e.type == "complaint.routed"]
    if routed:
        if d.get("routed_revision") is None and d.get("registered_at") is None:
            first = routed[0].summary  # the first routing decision: nature and receipt until registered
            d.update(nature=first.get("nature"), received_at=_at(first.get("received_at")))
        latest = max(routed, key=lambda e: (int(e.summary["revision"]), e.key()))
        stored = d.get("routed_revision")
        if stored is None or int(latest.summary["revision"]) >= int(str(stored)):
            _routing(d, latest.summary)
            if d.get("first_contact_owner") is None and d.get("registered_at") is not None:
                return None
        levels = [str(e.summary["level"]) for e in routed]
        if d.get("highest_level") is not None:
            levels.append(str(d["highest_level"]))
        d["highest_level"] = max(levels, key=_LEVELS.index)
        d["escalation_count"] = int(str(d.get("escalation_count") or 0)) + sum(
            e.action == DecisionKind.escalated for e in routed)
    registered = [e for e in new if e.type == "complaint.registered"]
    if registered and d.get("registered_at") is None:
        _registration(d, registered[0])
    _case_actions(d, [e for e in new if e.type == "case.updated"])
    alerts = [e for e in new if e.type == "sla.alert"]
    if alerts:
        d["policy_version"] = alerts[-1].summary.get("policy_version")
    d["event_count"] = int(str(d.get("event_count") or 0)) + len(new)
    d["last_event_time"] = max(last, new[-1].time)
    return CaseRow(**d)


def _commutes(row: CaseRow, e: ArchivedEvent) -> bool:
    """Whether an event older than the row's last one folds into the row alone, order aside."""
    if e.type == "notification.recorded":
        return True
    if e.type == "sla.alert":  # the latest alert's version stands: the same, or the first alert
        return row.policy_version is None or e.summary.get("policy_version") == row.policy_version
    return e.type == "complaint.registered" and row.registered_at is None
