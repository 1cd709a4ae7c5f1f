"""The synthetic load of `complaints bench --stage archive`: whole case lifecycles as the
services publish them (registered, routed, SLA alerts, notifications, the handler's steps),
and the SQL that fills a scratch archive with a million cases for the report figure. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.envelope import Envelope, derived_id
from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Complaint,
    ComplaintRegistered,
    ComplaintRouted,
    Contact,
    Level,
    Milestone,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
    RoutingDecision,
    Severity,
    SlaAlert,
    SlaEvent,
    SlaOutcome,
)
from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from tools.bench.load import CHANNELS, TEXTS

Produced = tuple[str, str, bytes, bytes]  # (topic, event id, key, value)
EVENTS_PER_CASE = 16


def lifecycle(run_id: str, i: int, start: datetime) -> list[Produced]:
    """One complaint's 16 events in the order they happen: registered and routed, the
    acknowledge, plan and resolve clocks, three notifications, acknowledged, plan decided,
    resolved, a satisfaction answer, closed."""
    cid = f"A{run_id}-{i:07d}"
    out: list[Produced] = []

    def add(topic: str, cls: type[Envelope], data: object, minute: float, source: str) -> None:
        # each service stamps its own time: no two events of a case share an instant
        event = cls.new(data, id=derived_id("bench-archive", run_id, cid, str(len(out))),
                        source=source, time=start + timedelta(minutes=minute, seconds=len(out)),
                        subject=cid)
        out.append((topic, event.id, cid.encode(), event.to_bytes()))

    def at(minute: float) -> datetime:
        return start + timedelta(minutes=minute)

    complaint = Complaint(
        complaint_id=cid, channel=CHANNELS[i % len(CHANNELS)], received_at=start,
        source_message_id=f"bench-archive-{run_id}-{i}", customer=Contact(), customer_key=f"bench-{i}",
        first_contact="bench-desk", subject=f"bench complaint {i}", description=TEXTS[i % len(TEXTS)])
    add(REGISTERED.name, ComplaintRegistered, complaint, 0, "intake")
    add(ROUTED.name, ComplaintRouted, RoutingDecision(
        complaint_id=cid, received_at=start, code=f"PQ-0{1 + i % 5}", severity=Severity.general,
        department="quality", level=Level.L1, handler=f"quality-l1-{i % 20:02d}",
        first_contact_owner="bench-desk", reasons=["bench"]), 1, "router")

    def clock(minute: float, milestone: Milestone, outcome: SlaOutcome, started: float,
              limit: float, on_time: bool | None = None) -> None:
        add(SLA.name, SlaEvent, SlaAlert(
            complaint_id=cid, milestone=milestone, outcome=outcome, severity=Severity.general,
            started_at=at(started), deadline=at(started + limit), observed_at=at(minute),
            on_time=on_time, policy_version="bench", notify=["owner"]), minute, "sla-monitor")

    def note(minute: float, kind: NotificationKind, status: str, attempt: int) -> None:
        add(NOTIFICATIONS.name, NotificationEvent, NotificationRecord(
            notification_id=f"{cid}-{kind.value}", complaint_id=cid, kind=kind,
            transport="outbox:sms", recipient="+86*******00", language="zh",
            status=status, attempt=attempt), minute, "notifier")  # type: ignore[arg-type]

    def step(minute: float, action: CaseAction, **fields: object) -> None:
        add(LIFECYCLE.name, CaseEvent, CaseUpdate(
            complaint_id=cid, action=action, actor=f"quality-l1-{i % 20:02d}", **fields),  # type: ignore[arg-type]
            minute, "intake")

    clock(1, Milestone.acknowledge, SlaOutcome.started, 0, 60)
    note(1, NotificationKind.acknowledgement, "queued", 0)
    note(2, NotificationKind.acknowledgement, "sent", 1)
    step(20, CaseAction.acknowledged)
    clock(20, Milestone.acknowledge, SlaOutcome.met, 0, 60, on_time=True)
    clock(20, Milestone.plan, SlaOutcome.started, 20, 1440)
    step(300, CaseAction.plan_decided)
    clock(300, Milestone.plan, SlaOutcome.met, 20, 1440, on_time=True)
    clock(300, Milestone.resolve, SlaOutcome.started, 0, 4320)
    step(2000, CaseAction.resolved, result="replaced the unit")
    clock(2000, Milestone.resolve, SlaOutcome.met, 0, 4320, on_time=True)
    note(2001, NotificationKind.result, "sent", 1)
    step(2600, CaseAction.satisfaction, score=1 + i % 5)
    step(2700, CaseAction.closed)
    return out


def interleaved(run_id: str, cases: int, start: datetime | None = None) -> list[Produced]:
    """The lifecycles of ``cases`` complaints as a live stream brings them: the k-th event of
    every case before the (k+1)-th of any, so each batch touches many cases, each of which
    already has events archived (the archive's costly path, not one case per batch)."""
    start = start or datetime.now(UTC) - timedelta(days=3)
    stories = [lifecycle(run_id, i, start + timedelta(seconds=i)) for i in range(cases)]
    return [story[k] for k in range(EVENTS_PER_CASE) for story in stories]


# Archived cases over the year before 2026-12-01 (7 clocks, 6 routing events and 4
# notifications each), written by PostgreSQL itself: the data of the monthly report figure.
_CASES_SQL = """
INSERT INTO archive_cases (complaint_id, status, channel, nature, received_at, code, department,
  severity, handler, repeat_of, escalation_count, acknowledged_at, resolved_at, reopen_count,
  satisfaction_score, event_count, updated_at)
SELECT 'C' || i, CASE WHEN i % 20 = 0 THEN 'open' ELSE 'resolved' END,
  (ARRAY['phone','web_form','email','wechat','social','app'])[1 + i % 6],
  CASE WHEN i % 10 = 0 THEN 'praise' ELSE 'complaint' END, t,
  'PQ-' || lpad((i % 30)::text, 2, '0'), (ARRAY['quality','service','operations','billing'])[1 + i % 4],
  (ARRAY['general','urgent','major'])[1 + i % 3], 'h-' || (i * 7) % 200,
  CASE WHEN i % 17 = 0 THEN 'C0' END, CASE WHEN i % 19 = 0 THEN 1 ELSE 0 END,
  t + make_interval(mins => 5 + i % 90),
  CASE WHEN i % 20 <> 0 THEN t + make_interval(hours => 2 + i % 100) END,
  CASE WHEN i % 23 = 0 THEN 1 ELSE 0 END, CASE WHEN i % 4 <> 0 THEN 1 + i % 5 END, 8, t
FROM (SELECT i, timestamptz '2025-12-01 00:00+00' + make_interval(secs => i * 31536000.0 / {cases}) AS t
      FROM generate_series(1, {cases}) AS i) s;
INSERT INTO archive_sla (complaint_id, milestone, cycle, severity, outcome, on_time, warnings,
  last_event_time)
SELECT c.complaint_id, m, 1, c.severity,
  CASE WHEN hashtext(c.complaint_id || m) & 63 = 0 THEN 'breached' ELSE 'met' END,
  hashtext(c.complaint_id || m) & 63 > 1, 0, c.received_at
FROM archive_cases c,
  unnest(ARRAY['acknowledge','respond','dispatch','plan','resolve','feedback','revisit']) AS m
WHERE c.nature = 'complaint';
INSERT INTO archive_events (event_id, complaint_id, topic, type, time, actor, action, summary,
  ingested_at)
SELECT c.complaint_id || '-' || k, c.complaint_id, 'complaints.routed', 'complaint.routed',
  c.received_at, 'router', CASE WHEN k = 2 AND c.escalation_count > 0 THEN 'escalated' ELSE 'routed' END,
  jsonb_build_object('level', CASE WHEN k = 2 THEN 'L2' ELSE 'L1' END,
                     'reasons', jsonb_build_array('a', 'b')),
  c.received_at
FROM archive_cases c, generate_series(1, 6) AS k;
INSERT INTO archive_notifications (notification_id, complaint_id, kind, role, transport, recipient,
  language, status, attempts, updated_at)
SELECT c.complaint_id || '-' || k, c.complaint_id, k, 'customer', 'sms', '+86***', 'zh', 'sent', 1,
  c.received_at
FROM archive_cases c, unnest(ARRAY['acknowledgement','assignment','result','revisit']) AS k
WHERE c.nature = 'complaint';
ANALYZE;
"""


def cases_sql(cases: int) -> str:
    """The SQL that writes ``cases`` archived cases spread over the year before 2026-12-01."""
    return _CASES_SQL.format(cases=int(cases))
